"""The delivery process's store calls, forwarded to the serving process (SQLite only).

With ``webhooks.own_process`` on the embedded store, the delivery process does not open
the SQLite file: its four store calls (take over dead owners' leases, claim, read the next
due time, record attempts) go over a socket pair to the process that started it, which runs
them on its own store. So one process writes the file and no write takes the file lock two
writing processes would share (bench/README.md "Webhook fan-out": with a second writer the
serving process's uploads lost ~20 % even with no webhooks, and every claim or record of the
delivery process stalled the uploads' commits behind SQLite's file lock).

Nothing of the guarantees moves: the claim and the record are the same transactions with
the same lease checks, made in another process. A call the delivery process sends is run
to its end by the serving process even if the sender dies meanwhile (a claim then leases to
a dead owner, which the next delivery process takes over at its start; a record is kept,
or finds its lease gone). The serving process waits for every forwarded call of a delivery
process before it starts the next one. If the serving process dies, the delivery process
dies with it (``PR_SET_PDEATHSIG``) and the next start recovers from the store.

Frames as :mod:`engine.actors.remote`'s (length-prefixed pickles, both ends the same
program): requests ``(call id, (method, args))``, answers ``(call id, ("ok", value))`` or
``(call id, ("error", message))``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import structlog
import trio

from engine.actors.remote import encode_frame, read_frame
from engine.errors import StoreError
from engine.metrics import NO_METRICS, MetricsSink
from engine.store.webhook_records import AttemptOutcome, DeliveryJob
from engine.webhooks.owner import owner_is_dead
from engine.webhooks.worker import outcome_label

log = structlog.get_logger(__name__)

CALL_TIMEOUT_SECONDS = 120.0  # a forwarded transaction queues behind the serving process's writes; a bound, not a budget


class LinkClosed(StoreError):
    """The serving process is gone (stopping or dead): the call was not answered."""


class ForwardedStore:
    """The delivery process's end: the store calls :class:`~engine.webhooks.worker.DeliveryWorker`
    makes, sent to the serving process. :meth:`run` reads the answers for the link's life."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._ids = itertools.count()
        self._waiting: dict[int, trio.MemorySendChannel[tuple[Any, ...]]] = {}
        self._send_lock = trio.StrictFIFOLock()
        self._closed = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        buffer = bytearray()
        try:
            while (frame := await read_frame(self.stream, buffer)) is not None:
                call_id, answer = frame
                waiter = self._waiting.pop(call_id, None)
                if waiter is not None:
                    waiter.send_nowait(answer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._closed = True
            for waiter in self._waiting.values():
                waiter.send_nowait(("closed",))
            self._waiting.clear()

    async def _call(self, method: str, *args: Any) -> Any:
        if self._closed:
            raise LinkClosed("the serving process is gone")
        call_id = next(self._ids)
        send, recv = trio.open_memory_channel[tuple[Any, ...]](1)
        self._waiting[call_id] = send
        try:
            async with self._send_lock:
                await self.stream.send_all(encode_frame((call_id, (method, args))))
            with trio.fail_after(CALL_TIMEOUT_SECONDS):
                answer = await recv.receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise LinkClosed("the serving process is gone") from None
        except trio.TooSlowError:
            raise StoreError(f"the serving process did not answer {method} in time") from None
        finally:
            self._waiting.pop(call_id, None)
        if answer[0] == "ok":
            return answer[1]
        if answer[0] == "closed":
            raise LinkClosed("the serving process is gone")
        raise StoreError(f"{method} failed in the serving process: {answer[1]}")

    async def release_delivery_leases(self, now: datetime, is_dead: Callable[[str], bool]) -> int:
        """``is_dead`` is the serving process's :func:`~engine.webhooks.owner.owner_is_dead` (a
        function does not cross the link; it is the only one the worker passes)."""
        del is_dead
        return int(await self._call("release_delivery_leases", now))

    async def claim_deliveries(self, owner: str, now: datetime, lease_until: datetime, limit: int, per_webhook: int,
                               busy: Sequence[str]) -> list[DeliveryJob]:
        return list(await self._call("claim_deliveries", owner, now, lease_until, limit, per_webhook, list(busy)))

    async def next_delivery_due(self) -> datetime | None:
        due: datetime | None = await self._call("next_delivery_due")
        return due

    async def record_attempts(self, owner: str, outcomes: Sequence[AttemptOutcome]) -> set[str]:
        return set(await self._call("record_attempts", owner, list(outcomes)))


async def _apply(store: Any, metrics: MetricsSink, method: str, args: tuple[Any, ...]) -> Any:
    if method == "release_delivery_leases":
        (now,) = args
        return await store.release_delivery_leases(now, owner_is_dead)
    if method == "claim_deliveries":
        return await store.claim_deliveries(*args)
    if method == "next_delivery_due":
        return await store.next_delivery_due()
    if method == "record_attempts":
        owner, outcomes = args
        recorded: set[str] = await store.record_attempts(owner, outcomes)
        for outcome in outcomes:  # counted here, so the serving process's metrics need no files shared with the child
            if outcome.attempt.delivery_id in recorded:
                metrics.webhook_delivered(outcome_label(outcome))
        return recorded
    raise StoreError(f"not a forwarded store call: {method!r}")


async def serve_store_link(stream: trio.SocketStream, store: Any, metrics: MetricsSink = NO_METRICS) -> None:
    """The serving process's end for one delivery process: run each call on ``store``
    (concurrently, as the worker makes them) and answer it; the attempts recorded are counted
    in ``metrics``. Returns once the delivery process
    has closed its end (exited, however) and every call it sent has ended: a transaction
    started for it is never cut short, whether or not anyone waits for its answer."""
    send_lock = trio.StrictFIFOLock()

    async def answer(call_id: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            result: tuple[Any, ...] = ("ok", await _apply(store, metrics, method, args))
        except Exception as exc:  # the delivery worker logs it and retries, as with its own store
            log.warning("webhook_forwarded_call_failed", method=method, error=repr(exc))
            result = ("error", repr(exc))
        data = encode_frame((call_id, result))
        async with send_lock:
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the delivery process is gone: its transaction stands, nobody waits for the answer

    buffer = bytearray()
    async with trio.open_nursery() as nursery:
        try:
            while (frame := await read_frame(stream, buffer)) is not None:
                call_id, (method, args) = frame
                nursery.start_soon(answer, call_id, method, args)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
