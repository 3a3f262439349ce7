"""Bulk operations (seed 003, API.md "Bulk operations"): many objects or datasets, one request.

Each item stands alone: it gets its own result or its own error (an :class:`EngineError`,
answered in the error envelope's shape), and one bad item never fails the others. What
makes a batch cheaper than as many single requests:

* **One message per dataset.** A batch's objects of one dataset go to that dataset's actor
  as one message (:class:`CreateObjects`, :class:`FinishUploads`, :class:`DeleteObjects`),
  not one per object, and the message writes them in one store transaction: one commit and
  one (group-committed) fsync for the batch.
* **One look-up.** The objects a confirmation or deletion names are read in one snapshot
  (``upload_views``, ``get_objects``).
* **One directory sync.** On local blobs the verified objects are renamed into place and
  their directory is fsynced once for the batch (:mod:`engine.store.blobs.bulk`).

Each item goes through the single operation's own checks: an initiation plans it by
:func:`engine.objects.plan_upload`, a confirmation verifies it by
:meth:`engine.objects.Objects.verify` (the parts, the size and SHA-256 of the bytes
received), so both answer the same errors; a confirmation answers only once the bytes and
the rows are durable. Work on one upload is serialised with single confirmations and
part PUTs by the same per-upload locks (taken in a fixed order, so two overlapping batches
cannot deadlock). Ids of another tenant are ``not_found`` per item, exactly like ids that
do not exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeAlias, TypeVar, Union, cast

import orjson
import structlog
import trio

from engine.actors.messages import Message
from engine.auth import Principal
from engine.datasets import check_transition
from engine.errors import (
    EngineError,
    InvalidRequest,
    NotFound,
    Unprocessable,
)
from engine.objects import Initiated, Objects, plan_upload
from engine.store.blobs.base import Staged
from engine.store.blobs.bulk import promote_many
from engine.store.records import Dataset, ObjectRecord, Upload, UploadPart

log = structlog.get_logger(__name__)

BATCH_MAX = 1000  # items per batch request (API.md: 1–1000)
BLOB_CONCURRENCY = 16  # blob-store calls of one batch in flight at once (S3 round trips)
DATASET_CONCURRENCY = 16  # datasets of one PATCH /v1/datasets changed at once

T = TypeVar("T")
Outcome: TypeAlias = Union[T, EngineError]  # noqa: UP007 - a generic alias; an item's result, or the error it alone gets


class BulkStore(Protocol):
    """What the batch operations need of the store (``engine/store/*/bulk.py``)."""

    async def create_object_uploads(self, pairs: Sequence[tuple[ObjectRecord, Upload]]) -> None: ...

    async def get_objects(self, tenant_id: str, object_ids: Sequence[str]) -> dict[str, ObjectRecord]: ...

    async def upload_views(
        self, tenant_id: str, object_ids: Sequence[str]
    ) -> dict[str, tuple[ObjectRecord, Upload, list[UploadPart]]]: ...

    async def finish_uploads(
        self, object_ids: Sequence[tuple[str, str]], now: datetime, review_deadline: datetime,
        next_dataset_status: Callable[[str], str],
    ) -> list[tuple[ObjectRecord, bool]]: ...

    async def delete_objects(
        self, tenant_id: str, object_ids: Sequence[str], now: datetime
    ) -> list[tuple[ObjectRecord, ObjectRecord] | None]: ...

    async def renew_upload(self, upload_id: str, expires_at: datetime, now: datetime) -> Upload | None: ...


# -- messages (one per dataset per batch) -----------------------------------------------------
@dataclass(frozen=True)
class CreateObjects(Message):
    """Many new objects of one dataset and their upload sessions, in one transaction."""

    pairs: tuple[tuple[ObjectRecord, Upload], ...]
    flush_by_asker = True

    async def apply(self, ctx: Any) -> None:
        await cast(BulkStore, ctx.store).create_object_uploads(self.pairs)


@dataclass(frozen=True)
class FinishUploads(Message):
    """Verified objects of one dataset marked uploaded and counted, in one transaction."""

    checked: tuple[tuple[str, str], ...]  # (object_id, sha256 computed)
    flush_by_asker = True  # as FinishUpload: the review clock's wake reads the store, which sees the commit

    async def apply(self, ctx: Any) -> list[tuple[ObjectRecord, bool]]:
        objects: Objects = ctx.objects
        now = objects.now()

        def next_status(current: str) -> str:
            if current == "draft":
                check_transition("draft", "ingesting", "system")
                return "ingesting"
            return current

        deadline = now + objects.review_window
        done = await cast(BulkStore, ctx.store).finish_uploads(self.checked, now, deadline, next_status)
        if any(changed for _, changed in done) and objects.on_staged is not None:
            objects.on_staged(deadline)
        return done


@dataclass(frozen=True)
class DeleteObjects(Message):
    """Objects of one dataset tombstoned and uncounted in one transaction, then their bytes purged."""

    tenant_id: str
    object_ids: tuple[str, ...]

    async def apply(self, ctx: Any) -> list[ObjectRecord | None]:
        objects: Objects = ctx.objects
        done = await cast(BulkStore, ctx.store).delete_objects(self.tenant_id, self.object_ids, objects.now())
        await _each([before for before, _ in filter(None, done)], objects.purge_bytes)
        log.info("objects_deleted", count=sum(1 for d in done if d is not None))
        return [None if d is None else d[1] for d in done]


@dataclass(frozen=True)
class RenewUploads(Message):
    """Fresh expiry for unconfirmed uploads of one dataset (a replayed batch initiation)."""

    upload_ids: tuple[str, ...]
    flush_by_asker = True

    async def apply(self, ctx: Any) -> list[Upload | None]:
        objects: Objects = ctx.objects
        now = objects.now()
        expires = now + timedelta(seconds=objects.cfg.url_ttl_seconds)
        store = cast(BulkStore, ctx.store)
        return [await store.renew_upload(upload_id, expires, now) for upload_id in self.upload_ids]


async def _each(items: Sequence[T], fn: Callable[[T], Awaitable[Any]], limit: int = BLOB_CONCURRENCY) -> None:
    """``fn(item)`` for every item, at most ``limit`` at once."""
    if not items:
        return
    slots = trio.CapacityLimiter(limit)

    async def one(item: T) -> None:
        async with slots:
            await fn(item)

    async with trio.open_nursery() as nursery:
        for item in items:
            nursery.start_soon(one, item)


def duplicates(keys: Sequence[Any], what: str) -> dict[int, EngineError]:
    """Items repeating an earlier item of the same batch: ``index → InvalidRequest`` naming the first."""
    first: dict[Any, int] = {}
    out: dict[int, EngineError] = {}
    for index, key in enumerate(keys):
        if key in first:
            out[index] = InvalidRequest(
                f"this {what} is already item {first[key]} of the batch", {"duplicate_of": first[key]}
            )
        else:
            first[key] = index
    return out


class Bulk:
    """Batch use cases over the single ones' parts (objects, datasets, the actors)."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.datasets = objects.datasets
        self.actors = objects.actors
        self.blobs = objects.blobs
        self.store = cast(BulkStore, objects.store)

    # -- initiate -----------------------------------------------------------------------
    async def initiate_many(
        self, principal: Principal, dataset_id: str, items: Sequence[Mapping[str, Any] | EngineError]
    ) -> list[Outcome[Initiated]]:
        """Initiate an upload per item (an item already refused by the caller's parsing stays
        refused). The dataset itself must exist and take uploads, or the whole request fails."""
        ds = await self.datasets.get_accepting(principal, dataset_id, "uploads")
        results: list[Outcome[Initiated] | None] = [None] * len(items)
        keys = [None if isinstance(item, EngineError) else orjson.dumps(item, option=orjson.OPT_SORT_KEYS) for item in items]
        repeated = duplicates(keys, "file")
        now = self.objects.now()
        planned: list[tuple[int, ObjectRecord, Upload]] = []
        for index, item in enumerate(items):
            if isinstance(item, EngineError):
                results[index] = item
            elif index in repeated and keys[index] is not None:
                results[index] = repeated[index]
            else:
                try:
                    obj, upload = plan_upload(principal.tenant_id, ds, item, self.objects.cfg, now)
                except EngineError as exc:
                    results[index] = exc
                else:
                    planned.append((index, obj, upload))
        if planned:
            await self.actors.ask(ds.id, CreateObjects(tuple((obj, upload) for _, obj, upload in planned)))
            log.info("uploads_initiated", count=len(planned))

            async def targets(entry: tuple[int, ObjectRecord, Upload]) -> None:
                index, obj, upload = entry
                results[index] = await self.objects._targets(obj, upload)

            await _each(planned, targets)
        return [r if r is not None else NotFound("not processed") for r in results]

    async def renew_many(self, principal: Principal, object_ids: Sequence[str]) -> dict[str, Initiated]:
        """Fresh URLs for the still unconfirmed uploads among ``object_ids`` (a replayed batch
        whose URLs expired); objects confirmed or deleted meanwhile are left out."""
        found = await self.store.get_objects(principal.tenant_id, object_ids)
        pending = [o for o in found.values() if o.uploaded_at is None and o.status != "deleted"]
        by_dataset: dict[str, list[ObjectRecord]] = {}
        for obj in pending:
            by_dataset.setdefault(obj.dataset_id, []).append(obj)
        out: dict[str, Initiated] = {}
        for dataset_id, objs in by_dataset.items():
            uploads = await self.actors.ask(dataset_id, RenewUploads(tuple(o.upload_id for o in objs)))
            fresh = await self.store.get_objects(principal.tenant_id, [o.id for o in objs])
            for obj, upload in zip(objs, uploads, strict=True):
                if upload is not None and upload.state == "pending" and obj.id in fresh:
                    out[obj.id] = await self.objects._targets(fresh[obj.id], upload)
        return out

    # -- confirm ------------------------------------------------------------------------
    async def confirm_many(self, principal: Principal, object_ids: Sequence[str]) -> list[Outcome[ObjectRecord]]:
        """Confirm each named upload: verified, promoted and counted, or its own error."""
        results: list[Outcome[ObjectRecord] | None] = [None] * len(object_ids)
        repeated = duplicates(object_ids, "object")
        for index, error in repeated.items():
            results[index] = error
        wanted = [(i, oid) for i, oid in enumerate(object_ids) if i not in repeated]
        first = await self.store.upload_views(principal.tenant_id, [oid for _, oid in wanted])
        async with contextlib.AsyncExitStack() as held:
            for object_id in sorted(first):  # the objects' locks, in one order (see Objects.confirm)
                await held.enter_async_context(self.objects._locks.hold(object_id))
            views = await self.store.upload_views(principal.tenant_id, list(first))  # again, under the locks
            verified: dict[int, Staged | ObjectRecord] = {}

            async def verify(entry: tuple[int, str]) -> None:
                index, object_id = entry
                view = views.get(object_id)
                try:
                    if view is None:
                        raise NotFound("object not found")
                    verified[index] = await self.objects.verify(principal, view, None)
                except EngineError as exc:
                    results[index] = exc

            await _each(wanted, verify)
            to_promote = {i: s for i, s in verified.items() if isinstance(s, Staged)}
            for i, s in verified.items():
                if isinstance(s, ObjectRecord):
                    results[i] = s
            blob_of = {i: views[object_ids[i]][0].blob_id for i in to_promote}
            failed = await promote_many(self.blobs, [(s, blob_of[i]) for i, s in to_promote.items()])
            by_dataset: dict[str, list[int]] = {}
            for position, (i, _staged) in enumerate(to_promote.items()):
                if position in failed:
                    results[i] = Unprocessable("the uploaded bytes are missing; upload the file again", {"part_number": 1})
                else:
                    by_dataset.setdefault(views[object_ids[i]][0].dataset_id, []).append(i)

            async def finish(dataset_id: str) -> None:
                indexes = by_dataset[dataset_id]
                message = FinishUploads(tuple((object_ids[i], to_promote[i].sha256) for i in indexes))
                try:
                    done = await self.actors.ask(dataset_id, message)
                except EngineError as exc:
                    for i in indexes:
                        results[i] = exc
                    return
                for i, (obj, _changed) in zip(indexes, done, strict=True):
                    results[i] = obj

            await _each(list(by_dataset), finish, DATASET_CONCURRENCY)
            finished = [views[object_ids[i]] for i in to_promote if isinstance(results[i], ObjectRecord)]
            await _each(finished, lambda v: self.blobs.discard_upload(v[1].id, v[0].blob_id, multipart=v[1].strategy == "multipart"))
        log.info("uploads_confirmed", count=sum(isinstance(r, ObjectRecord) for r in results), asked=len(object_ids))
        return [r if r is not None else NotFound("object not found") for r in results]

    # -- delete -------------------------------------------------------------------------
    async def delete_many(self, principal: Principal, object_ids: Sequence[str]) -> list[Outcome[ObjectRecord]]:
        """Delete each named object (a tombstone; bytes and index entries removed)."""
        results: list[Outcome[ObjectRecord] | None] = [None] * len(object_ids)
        repeated = duplicates(object_ids, "object")
        for index, error in repeated.items():
            results[index] = error
        wanted = [(i, oid) for i, oid in enumerate(object_ids) if i not in repeated]
        found = await self.store.get_objects(principal.tenant_id, [oid for _, oid in wanted])
        by_dataset: dict[str, list[int]] = {}
        for index, object_id in wanted:
            obj = found.get(object_id)
            try:
                if obj is None:
                    raise NotFound("object not found")
                principal.require_dataset(obj.dataset_id)
            except EngineError as exc:
                results[index] = exc
                continue
            by_dataset.setdefault(obj.dataset_id, []).append(index)
        async with contextlib.AsyncExitStack() as held:
            for object_id in sorted({object_ids[i] for ids in by_dataset.values() for i in ids}):
                await held.enter_async_context(self.objects._locks.hold(object_id))

            async def delete(dataset_id: str) -> None:
                indexes = by_dataset[dataset_id]
                message = DeleteObjects(principal.tenant_id, tuple(object_ids[i] for i in indexes))
                try:
                    done = await self.actors.ask(dataset_id, message)
                except EngineError as exc:
                    for i in indexes:
                        results[i] = exc
                    return
                for i, obj in zip(indexes, done, strict=True):
                    results[i] = obj if obj is not None else NotFound("object not found")

            await _each(list(by_dataset), delete, DATASET_CONCURRENCY)
        return [r if r is not None else NotFound("object not found") for r in results]

    # -- datasets -----------------------------------------------------------------------
    async def update_many(self, principal: Principal, dataset_ids: Sequence[str], fields: Mapping[str, Any]) -> list[Outcome[Dataset]]:
        """Apply one change to each named dataset, each through its own actor, as
        ``PATCH /v1/datasets/{id}`` would (its lifecycle rules, its errors)."""
        results: list[Outcome[Dataset] | None] = [None] * len(dataset_ids)
        repeated = duplicates(dataset_ids, "dataset")
        for index, error in repeated.items():
            results[index] = error

        async def update(index: int) -> None:
            try:
                results[index] = await self.datasets.update(principal, dataset_ids[index], fields)
            except EngineError as exc:
                results[index] = exc

        await _each([i for i in range(len(dataset_ids)) if i not in repeated], update, DATASET_CONCURRENCY)
        return [r if r is not None else NotFound("dataset not found") for r in results]
