"""The store interface every backend implements (SQLite and PostgreSQL).

Methods are coroutines; each one is atomic (one transaction). Scoping by tenant is part
of the signature wherever a tenant's resource is read or changed, so a handler cannot
forget it: another tenant's id simply finds nothing.

List methods take ``after`` (a ``seq`` from a cursor, or None) and ``limit`` and return
rows newest first; ``engine.pagination`` turns that into pages.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from engine.market.query import Node
from engine.store.market import AccessPricer, PriceInputs
from engine.store.money import MoneyStore
from engine.store.records import (
    Access,
    ApiKey,
    Artifacts,
    CatalogEntry,
    Datapoint,
    Dataset,
    Grant,
    IdempotencyRecord,
    ImportJob,
    Impression,
    Job,
    LedgerEntry,
    Membership,
    ObjectRecord,
    QueueFilter,
    Searchable,
    SearchRecord,
    Session,
    Tenant,
    Upload,
    UploadPart,
    User,
)
from engine.store.search import ChunkHit

_flush_deferred: contextvars.ContextVar[bool] = contextvars.ContextVar("flush_deferred", default=False)


@contextlib.contextmanager
def flush_deferred() -> Iterator[None]:
    """Writes inside return once committed, maybe before they are on disk; the caller must
    ``await store.flush()`` before anyone acts on them. (A dataset's actor applies such
    messages and goes on to the next while the asker waits for the disk, so one fsync can
    cover many messages.)"""
    token = _flush_deferred.set(True)
    try:
        yield
    finally:
        _flush_deferred.reset(token)


def is_flush_deferred() -> bool:
    return _flush_deferred.get()


class Store(MoneyStore, Protocol):
    """Persistence for the engine. Implementations: ``SqliteStore``, ``PgStore``."""

    async def ping(self) -> None:
        """Raise if the store cannot answer a trivial query."""

    async def flush(self) -> None:
        """Return once every write committed so far is on disk. Writes return only once
        they are, except inside :func:`flush_deferred`."""

    async def operational_counts(self) -> dict[str, dict[str, int]]:
        """Unfinished jobs and imports and the review queue, by state (``GET /metrics``)."""
        ...

    # -- identity -----------------------------------------------------------------
    async def create_account(self, tenant: Tenant, user: User, membership: Membership) -> None:
        """Insert a tenant, its first user and the membership; UniqueViolation on a taken email."""

    async def get_user(self, user_id: str) -> User | None: ...

    async def get_user_by_email(self, email: str) -> User | None: ...

    async def set_platform_admin(self, user_id: str, is_admin: bool) -> None: ...

    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    async def get_membership(self, tenant_id: str, user_id: str) -> Membership | None: ...

    async def first_membership(self, user_id: str) -> Membership | None:
        """The user's oldest membership (the tenant a login lands in)."""

    async def create_session(self, session: Session) -> None: ...

    async def get_session(self, token_hash: str) -> Session | None: ...

    async def session_principal(self, token_hash: str) -> tuple[Session, bool, str] | None:
        """``(session, user is platform admin, membership role)`` in one read, or None."""

    async def revoke_session(self, token_hash: str, at: datetime) -> None: ...

    async def purge_sessions(self, before: datetime) -> int:
        """Delete sessions that expired before ``before``; return how many."""

    # -- API keys -------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey) -> None: ...

    async def get_api_key_by_prefix(self, prefix: str) -> ApiKey | None: ...

    async def get_api_key(self, tenant_id: str, key_id: str) -> ApiKey | None: ...

    async def list_api_keys(self, tenant_id: str, after: int | None, limit: int) -> list[ApiKey]: ...

    async def update_api_key(self, tenant_id: str, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        """Apply ``changes`` (name, dataset_access_mode, dataset_ids, revoked_at)."""

    async def touch_api_key(self, key_id: str, at: datetime, stale_before: datetime) -> None:
        """Set ``last_used_at`` to ``at`` unless it is already newer than ``stale_before``."""

    # -- datasets -------------------------------------------------------------------
    async def create_dataset(self, dataset: Dataset) -> None: ...

    async def get_dataset(self, tenant_id: str, dataset_id: str) -> Dataset | None:
        """A live (not deleted) dataset of this tenant, else None."""

    async def get_dataset_any(self, dataset_id: str) -> Dataset | None:
        """A live (not deleted) dataset of any tenant (platform admins), else None."""

    async def list_datasets(
        self,
        tenant_id: str,
        *,
        status: str | None,
        visibility: str | None,
        only_ids: Iterable[str] | None,
        after: int | None,
        limit: int,
    ) -> tuple[list[Dataset], int]:
        """A page of live datasets and the total matching the filters."""

    async def existing_dataset_ids(self, tenant_id: str, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are live datasets of this tenant."""

    async def update_dataset(self, tenant_id: str, dataset_id: str, changes: Mapping[str, Any]) -> Dataset | None: ...

    async def list_catalog(self, after: int | None, limit: int) -> list[CatalogEntry]:
        """Listed datasets of every tenant that buyers may see."""

    # -- idempotency ----------------------------------------------------------------
    async def idempotency_begin(
        self,
        principal: str,
        key: str,
        fingerprint: str,
        now: datetime,
        expires_at: datetime,
        stale_before: datetime,
    ) -> IdempotencyRecord | None:
        """Claim ``(principal, key)`` for a new request and return None, or return the
        record already there (done, or still in progress). Expired records and
        in-progress records locked before ``stale_before`` are taken over.

        The claim need not reach the disk before the request runs: the request is answered
        only after :meth:`idempotency_finish`, whose durable commit makes every earlier
        commit durable too. A claim lost to a power loss belonged to an unanswered request."""

    async def idempotency_finish(self, principal: str, key: str, status_code: int, response: bytes) -> None: ...

    async def idempotency_release(self, principal: str, key: str) -> None:
        """Forget an in-progress claim (the request failed without a storable answer)."""

    async def purge_idempotency(self, now: datetime) -> int: ...

    # -- objects and uploads ----------------------------------------------------------
    async def create_object_upload(self, obj: ObjectRecord, upload: Upload) -> None: ...

    async def get_object(self, tenant_id: str, object_id: str) -> ObjectRecord | None:
        """The tenant's object, tombstones included."""

    async def get_object_by_blob(self, blob_id: str) -> ObjectRecord | None: ...

    async def get_upload(self, upload_id: str) -> Upload | None: ...

    async def list_parts(self, upload_id: str) -> list[UploadPart]: ...

    async def upload_view(self, tenant_id: str, object_id: str) -> tuple[ObjectRecord, Upload, list[UploadPart]] | None:
        """The tenant's object, its upload and the parts received so far, in one snapshot;
        None if there is no such object (or upload)."""

    async def record_part(self, part: UploadPart) -> tuple[bool, str | None]:
        """Record a part if its upload is pending: ``(accepted, file the part replaced)``."""

    async def finish_upload(
        self, object_id: str, checksum: str, now: datetime, review_deadline: datetime, next_dataset_status: Callable[[str], str]
    ) -> tuple[ObjectRecord, bool]:
        """Mark uploaded and count in the dataset, once; ``(object, whether this call did it)``."""

    async def renew_upload(self, upload_id: str, expires_at: datetime, now: datetime) -> Upload | None: ...

    async def list_objects(
        self, tenant_id: str, dataset_id: str, *, status: str | None, review_state: str | None, after: int | None, limit: int,
        checksum_sha256: str | None = None,
    ) -> list[ObjectRecord]:
        """Newest first; not deleted unless ``status`` asks; ``checksum_sha256`` (lower-case hex):
        only objects whose bytes were verified to have it."""

    async def delete_object(self, tenant_id: str, object_id: str, now: datetime) -> tuple[ObjectRecord, list[UploadPart]] | None: ...

    async def delete_dataset_objects(
        self, tenant_id: str, dataset_id: str, now: datetime
    ) -> list[tuple[ObjectRecord, list[UploadPart]]]: ...

    async def datasets_with_expired_uploads(self, before: datetime) -> list[str]: ...

    async def abandon_expired_uploads(self, dataset_id: str, before: datetime, now: datetime) -> list[tuple[Upload, list[UploadPart]]]: ...

    # -- review -----------------------------------------------------------------------
    async def get_object_any(self, object_id: str) -> ObjectRecord | None:
        """An object of any tenant (platform admins only)."""

    async def list_review_queue(self, f: QueueFilter, after: int | None, limit: int, *, oldest_first: bool = False) -> list[ObjectRecord]:
        """The queue objects ``f`` selects after the object at ``seq = after``: newest first,
        or oldest upload first (``(uploaded_at, seq)`` ascending, where arrivals sort last)."""
        ...

    async def claim_for_review(self, object_id: str, admin_id: str, now: datetime) -> ObjectRecord: ...

    async def approve_object(self, object_id: str, admin_id: str, job: Job, now: datetime) -> tuple[ObjectRecord, bool]: ...

    async def reject_object(self, object_id: str, admin_id: str, reason: str | None, now: datetime) -> tuple[ObjectRecord, bool]: ...

    async def expire_due(self, dataset_id: str, now: datetime) -> list[ObjectRecord]: ...

    async def next_review_deadline(self) -> datetime | None: ...

    async def datasets_with_due_reviews(self, now: datetime, limit: int = 1000) -> list[str]: ...

    # -- jobs and index ---------------------------------------------------------------
    async def get_job(self, tenant_id: str, job_id: str) -> Job | None: ...

    async def get_job_any(self, job_id: str) -> Job | None: ...

    async def unfinished_jobs(self, job_type: str) -> list[Job]: ...

    async def start_stage(self, job_id: str, stage: str, now: datetime) -> tuple[Job, ObjectRecord] | None:
        """Record that a try of ``stage`` starts (``attempts`` counts the tries of the current
        stage, this one included: 1 after a clean run); None if the job is over."""

    async def stage_attempt_failed(self, job_id: str, error: str) -> Job:
        """Record why the current try failed (it was counted when it started)."""

    async def record_normalized(self, object_id: str, mime: str) -> None: ...

    async def record_artifacts(self, object_id: str, artifacts: Artifacts) -> None: ...

    async def replace_index(self, obj: ObjectRecord, chunks: Sequence[str], vectors: Iterable[bytes] | None) -> None: ...

    async def finish_job(self, job_id: str, now: datetime, next_dataset_status: Callable[[str], str]) -> tuple[Job, ObjectRecord]: ...

    async def fail_job(self, job_id: str, error: str, now: datetime) -> Job: ...

    # -- search index (engine/store/{sqlite,postgres}/search.py) ---------------------------
    async def search_chunks(self, tenant_id: str, dataset_id: str, query: str, limit: int = 20) -> list[tuple[str, int, str]]:
        """``(object_id, chunk_no, text)`` of a dataset's chunks holding every word of ``query``."""

    async def count_vectors(self, object_id: str) -> int: ...

    async def lexical_search(self, root: Node, dataset_seqs: Sequence[int], limit: int) -> list[tuple[int, float]]:
        """``(chunk id, BM25 score)`` of the best chunks of these datasets matching the
        expanded tree, best first, ties by id; identical scores on both backends."""

    async def lexical_hits(self, root: Node, dataset_seqs: Sequence[int], limit: int) -> tuple[list[tuple[int, float]], dict[int, ChunkHit]]:
        """:meth:`lexical_search` and :meth:`chunk_hits` of its answer, in one read."""

    async def matching_ids(self, root: Node, dataset_seqs: Sequence[int]) -> set[int]: ...

    async def filter_matching(self, ids: Sequence[int], root: Node) -> set[int]:
        """Those of the chunks ``ids`` that match the expanded tree (vector search's constraints
        checked on its candidates); the same answer as :meth:`matching_ids` restricted to ``ids``."""

    async def expand_terms(self, low: str, high: str | None, match: Callable[[str], bool], limit: int) -> list[str] | None:
        """Dictionary terms in ``[low, high)`` accepted by ``match``; None past ``limit``."""

    async def count_terms(self, low: str, high: str | None, limit: int) -> int:
        """How many dictionary terms are in ``[low, high)``, counting no further than ``limit``."""

    async def chunk_hits(self, ids: Sequence[int]) -> dict[int, ChunkHit]: ...

    async def index_log_head(self) -> int: ...

    async def index_changes(self, after: int, limit: int = 10_000) -> list[tuple[int, str]]: ...

    async def object_vectors(self, object_ids: Sequence[str]) -> dict[str, list[tuple[int, bytes]]]: ...

    async def vector_count(self) -> int:
        """Vectors indexed (the cache sizes its matrix once before loading them)."""

    async def vector_page(self, after_id: int, limit: int) -> list[tuple[int, str, bytes]]: ...

    async def vectors_for(self, ids: Sequence[int]) -> dict[int, bytes]: ...

    # -- marketplace (engine/store/{sqlite,postgres}/market.py) ---------------------------
    async def create_grant(self, grant: Grant) -> Grant:
        """UniqueViolation when the tenant already holds a grant for the dataset."""

    async def get_grant(self, dataset_id: str, grant_id: str) -> Grant | None: ...

    async def find_grant(self, dataset_id: str, tenant_id: str) -> Grant | None: ...

    async def list_grants(self, dataset_id: str, after: int | None, limit: int) -> list[Grant]: ...

    async def delete_grant(self, dataset_id: str, grant_id: str) -> bool: ...

    async def searchable_datasets(self, tenant_id: str) -> list[Searchable]:
        """Own live datasets; others' listed ones and granted restricted ones, unless hidden."""

    async def searchable_since(self, tenant_id: str, version: int | None) -> tuple[int, list[Searchable] | None]:
        """``(discovery version, searchable datasets)`` read in one snapshot, the list None
        when the version is still ``version`` (the caller's cached list holds)."""


    async def record_searches(
        self, searches: Sequence[SearchRecord], impressions: Sequence[Impression], more_results: Sequence[tuple[str, int]]
    ) -> None:
        """A batch of recordings in one transaction (need not wait for the disk)."""

    async def get_search(self, tenant_id: str, search_id: str) -> SearchRecord | None: ...

    async def list_impressions(self, search_id: str) -> list[Impression]: ...

    async def record_access(self, draft: Access, pricer: AccessPricer, since: datetime) -> tuple[Access, list[LedgerEntry], bool]:
        """Price and write an access with its ledger entries in one transaction, or return
        the one its (idempotency principal, key) already made; ``(access, entries, created)``."""

    async def get_access(self, tenant_id: str, access_id: str) -> Access | None: ...

    async def ledger_for_access(self, access_id: str) -> list[LedgerEntry]: ...

    async def price_inputs(self, dataset_id: str, buyer_tenant_id: str, period: str, since: datetime) -> PriceInputs: ...

    async def recent_access_counts(self, dataset_ids: Sequence[str], since: datetime) -> dict[str, int]: ...

    async def paid_datasets(self, buyer_tenant_id: str, dataset_ids: Sequence[str], period: str) -> set[str]: ...

    # -- record imports ---------------------------------------------------------------
    async def create_import(self, imp: ImportJob) -> None: ...

    async def get_import(self, tenant_id: str, import_id: str) -> ImportJob | None: ...

    async def get_import_any(self, import_id: str) -> ImportJob | None: ...

    async def list_imports(self, tenant_id: str, dataset_id: str, after: int | None, limit: int) -> list[ImportJob]: ...

    async def import_arrived(
        self, import_id: str, size: int, now: datetime, next_dataset_status: Callable[[str], str]
    ) -> ImportJob | None:
        """uninitialised → queued at the next place of the dataset's queue; None otherwise."""

    async def claim_next_import(self, dataset_id: str, now: datetime) -> ImportJob | None:
        """The processing import, else the earliest queued one (now processing), else None."""

    async def datasets_with_pending_imports(self) -> list[str]: ...

    async def insert_batch(
        self,
        import_id: str,
        lines: Sequence[int],
        packed: bytes,
        errors: Sequence[dict[str, Any]],
        rejected: int,
        parsed: int,
        offset: int,
        line: int,
        now: datetime,
    ) -> ImportJob:
        """Accepted records (``packed``: their JSON texts, see :mod:`engine.store.packing`;
        ``lines``: where each was in the file), counters, first errors and the checkpoint, atomically.

        Committed without waiting for the disk (SQLite ``synchronous=NORMAL``, PostgreSQL
        ``synchronous_commit=off``): a crash of the process loses nothing, and a power loss
        can lose only the latest batches, whose checkpoint goes with them, so the import
        redoes them from its file, which is kept until :meth:`finish_import` (durable, and
        making every batch before it durable) has committed."""

    async def finish_import(self, import_id: str, status: str, reason: str | None, now: datetime) -> ImportJob: ...

    async def list_datapoints(self, tenant_id: str, dataset_id: str, after: int | None, limit: int) -> list[Datapoint]: ...
