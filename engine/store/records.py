"""Rows as frozen dataclasses: what the store returns and the domain reads.

``seq`` is the store's insertion position, used only by cursor pagination.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str | None
    password_hash: str
    is_platform_admin: bool
    created_at: datetime


@dataclass(frozen=True)
class Membership:
    tenant_id: str
    user_id: str
    role: str
    created_at: datetime


@dataclass(frozen=True)
class Session:
    token_hash: str
    user_id: str
    tenant_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant_id: str
    user_id: str
    name: str
    prefix: str
    secret_hash: str
    scopes: tuple[str, ...]
    dataset_access_mode: str
    dataset_ids: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    seq: int = 0


@dataclass(frozen=True)
class Dataset:
    id: str
    tenant_id: str
    name: str
    description: str | None
    source_modality: str
    monetization_mode: str
    pricing_model: str
    visibility: str
    status: str
    created_at: datetime
    updated_at: datetime
    object_count: int = 0
    active_object_count: int = 0
    total_bytes: int = 0
    total_datapoint_count: int = 0
    last_ingest_at: datetime | None = None
    record_schema: dict[str, Any] | None = None
    price_micros: int = 0
    currency: str = "USD"
    seq: int = 0

    def replace(self, **changes: Any) -> Dataset:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class CatalogEntry:
    dataset: Dataset
    provider_name: str

    @property
    def seq(self) -> int:
        return self.dataset.seq


@dataclass(frozen=True)
class IdempotencyRecord:
    principal: str
    key: str
    fingerprint: str
    state: str  # in_progress | done
    status_code: int | None
    response: bytes | None
    created_at: datetime
    locked_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class ObjectRecord:
    id: str
    tenant_id: str
    dataset_id: str
    blob_id: str
    upload_id: str
    original_filename: str
    mime_type: str
    size_bytes: int
    declared_sha256: str | None
    checksum_sha256: str | None
    status: str
    review_state: str
    created_at: datetime
    updated_at: datetime
    failure_reason: str | None = None
    latest_job_id: str | None = None
    plain_text: bool = False
    ocr_blocks: bool = False
    chunk_embeddings: bool = False
    review_deadline: datetime | None = None
    uploaded_at: datetime | None = None
    deleted_at: datetime | None = None
    review_reason: str | None = None
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None
    normalized_mime_type: str | None = None
    keywords: tuple[str, ...] = ()
    seq: int = 0

    @property
    def counted(self) -> bool:
        """Whether the object counts in its dataset's object_count and total_bytes."""
        return self.uploaded_at is not None and self.status != "deleted" and self.review_state not in ("rejected", "expired")


@dataclass(frozen=True)
class QueueFilter:
    """Which objects of the admin review queue a page shows (every field narrows it)."""

    review_states: tuple[str, ...]
    tenant_id: str | None = None
    dataset_id: str | None = None
    mime_types: tuple[str, ...] | None = None  # an object modality, as the MIME types it covers
    uploaded_from: datetime | None = None  # inclusive
    uploaded_to: datetime | None = None  # exclusive


@dataclass(frozen=True)
class Upload:
    id: str
    object_id: str
    tenant_id: str
    dataset_id: str
    strategy: str  # single_part | multipart
    part_size_bytes: int
    part_count: int
    state: str  # pending | completed | abandoned | cancelled
    expires_at: datetime
    created_at: datetime
    completed_at: datetime | None = None

    def part_length(self, part_number: int, size_bytes: int) -> int:
        """Bytes part ``part_number`` (1-based) must hold: full parts, then the remainder."""
        if part_number < self.part_count:
            return self.part_size_bytes
        return size_bytes - self.part_size_bytes * (self.part_count - 1)


@dataclass(frozen=True)
class UploadPart:
    upload_id: str
    part_number: int
    file_name: str
    size_bytes: int
    sha256: str
    received_at: datetime

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


@dataclass(frozen=True)
class Job:
    id: str
    tenant_id: str
    dataset_id: str
    type: str  # pipeline | import
    status: str  # queued | running | succeeded | failed
    created_at: datetime
    object_id: str | None = None
    import_id: str | None = None
    stage: str | None = None
    attempts: int = 0  # tries of the current stage, the running one included (1 after a clean run)
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seq: int = 0


@dataclass(frozen=True)
class Artifacts:
    """What the pipeline produced for an object (``artifact_summary`` and the index)."""

    plain_text: bool
    ocr_blocks: bool
    chunk_embeddings: bool
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportJob:
    id: str
    tenant_id: str
    dataset_id: str
    filename: str
    format: str  # jsonl | csv
    status: str
    expires_at: datetime
    created_at: datetime
    arrival: int | None = None
    size_bytes: int | None = None
    accepted_count: int = 0
    rejected_count: int = 0
    errors: tuple[dict[str, Any], ...] = ()
    reason: str | None = None
    checkpoint_offset: int = 0
    checkpoint_line: int = 0
    parsed_count: int = 0
    received_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seq: int = 0


@dataclass(frozen=True)
class Datapoint:
    dataset_id: str
    import_id: str
    line: int
    data: str  # JSON text
    seq: int = 0


# The datasets table's columns, those an update may change, and which datasets a buyer's
# catalog shows: listed, active, and holding something a buyer can search or retrieve (a
# draft or an emptied dataset is nothing to buy; paused, archived and suspended ones are
# withdrawn). Both stores use these.
DATASET_COLUMNS = (
    "id", "tenant_id", "name", "description", "source_modality", "monetization_mode", "pricing_model",
    "visibility", "status", "object_count", "active_object_count", "total_bytes", "total_datapoint_count",
    "last_ingest_at", "record_schema", "created_at", "updated_at", "price_micros", "currency",
)
DATASET_MUTABLE = frozenset(DATASET_COLUMNS) - {"id", "tenant_id", "created_at"}
# A row (alias ``{t}``) of a dataset that is not deleted: what a deleted dataset held
# (objects, jobs, imports) answers 404 with it.
IN_LIVE_DATASET = " AND NOT EXISTS (SELECT 1 FROM datasets d WHERE d.id = {t}.dataset_id AND d.status = 'deleted')"
IN_CATALOG = "d.visibility = 'listed' AND d.status = 'active' AND (d.active_object_count > 0 OR d.total_datapoint_count > 0)"

# Others' datasets in these states are not found by search nor retrieved (the catalog: IN_CATALOG).
HIDDEN_FROM_CATALOG = ("paused", "archived", "suspended", "pending_deletion", "deleted")


# -- the marketplace (engine/market) ---------------------------------------------------

@dataclass(frozen=True)
class Grant:
    """A tenant allowed to discover a ``restricted`` dataset and retrieve from a
    ``restricted``-monetization one."""

    id: str
    dataset_id: str
    tenant_id: str
    created_by: str
    created_at: datetime
    seq: int = 0


@dataclass(frozen=True)
class Searchable:
    """A dataset some caller may search: what ranking, filtering and pricing need of it."""

    id: str
    seq: int  # the dataset's store position: the high bits of its chunks' ids
    tenant_id: str
    visibility: str
    monetization_mode: str
    status: str


@dataclass(frozen=True)
class SearchRecord:
    """One search, as buyer activity and provider analytics read it."""

    id: str
    tenant_id: str
    user_id: str | None
    api_key_id: str | None
    query: str
    mode: str
    dataset_ids: tuple[str, ...]  # as requested; () = every dataset the caller may search
    keywords: tuple[str, ...]  # the query's folded words
    result_count: int
    created_at: datetime
    seq: int = 0


@dataclass(frozen=True)
class Impression:
    """One result shown: ``dataset_id`` (of ``provider_tenant_id``) at ``rank`` of ``search_id``."""

    search_id: str
    rank: int
    dataset_id: str
    provider_tenant_id: str
    buyer_tenant_id: str
    object_id: str
    chunk_index: int
    created_at: datetime


@dataclass(frozen=True)
class Access:
    """A retrieval event and what it was charged (``amount_micros``, of which ``fee_micros``
    is the platform's)."""

    id: str
    buyer_tenant_id: str
    user_id: str | None
    api_key_id: str | None
    provider_tenant_id: str
    dataset_id: str
    object_id: str
    search_id: str | None
    result_id: str | None
    pricing_model: str
    monetization_mode: str
    amount_micros: int
    fee_micros: int
    currency: str
    period: str  # UTC month, "YYYY-MM"
    created_at: datetime
    idempotency_principal: str | None = None
    idempotency_key: str | None = None
    seq: int = 0


LEDGER_KINDS = ("charge", "fee", "refund", "fee_refund")


@dataclass(frozen=True)
class LedgerEntry:
    """An immutable money movement in integer micros: ``charge``/``fee`` ≥ 0,
    ``refund``/``fee_refund`` ≤ 0."""

    id: str
    access_id: str
    kind: str
    amount_micros: int
    currency: str
    buyer_tenant_id: str
    provider_tenant_id: str
    dataset_id: str
    api_key_id: str | None
    period: str
    created_at: datetime
    dispute_id: str | None = None
    seq: int = 0
