"""The delivery worker: claims due deliveries, sends them, records what happened.

Supervised in the service (started under the actors' supervisor; a failing round is
logged and retried, never fatal). Every process runs one; on PostgreSQL they share the
work through leased claims (``FOR UPDATE SKIP LOCKED``). A claim leases a delivery to its
owner (:mod:`.owner`) for ``lease_seconds``; a dead process's leases expire so another takes
over, and a starting worker takes over at once those of owners it can prove dead (never a
live process's): delivery is at least once, retries carry the same ``webhook-id``.

Schedule (Standard Webhooks' style, growing delays over ~3 days): the first attempt at
once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 21 h (72.6 h in all).
A ``410 Gone`` disables the endpoint at once; an endpoint whose attempts have failed
without a success for ``disable_after_seconds`` (3 days) is disabled. Disabled endpoints'
deliveries wait (visible in the log) and go on if it is enabled again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
import trio

from engine.config import WebhooksConfig
from engine.metrics import NO_METRICS, MetricsSink
from engine.store.webhook_records import Attempt, AttemptOutcome, DeliveryJob
from engine.webhooks.keys import Sealer, signature_header
from engine.webhooks.owner import owner_is_dead
from engine.webhooks.sender import SendResult

log = structlog.get_logger(__name__)

RETRY_DELAYS_SECONDS: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 75600)
ERROR_BACKOFF_SECONDS = 5.0
CLAIM_COALESCE_SECONDS = 0.01

Send = Callable[[str, Mapping[str, str], bytes], Awaitable[SendResult]]


def decide(job: DeliveryJob, result: SendResult, started_at: datetime, disable_after_seconds: int) -> AttemptOutcome:
    """What an attempt's result means for its delivery and its endpoint."""
    attempt = Attempt(job.delivery.id, job.delivery.attempts + 1, started_at, result.status_code, result.duration_ms,
                      result.error, result.excerpt)
    failing_before = started_at - timedelta(seconds=disable_after_seconds)
    code = result.status_code
    if code is not None and 200 <= code < 300:
        return AttemptOutcome(attempt, True, None, None, failing_before)
    if code == 410:
        return AttemptOutcome(attempt, False, None, "gone", failing_before)
    done = job.delivery.attempts  # tries before this one
    later = started_at + timedelta(seconds=RETRY_DELAYS_SECONDS[done]) if done < len(RETRY_DELAYS_SECONDS) else None
    return AttemptOutcome(attempt, False, later, None, failing_before)


class _Batch:
    def __init__(self) -> None:
        self.outcomes: list[AttemptOutcome] = []
        self.done = trio.Event()
        self.error: Exception | None = None


class AttemptRecorder:
    """Attempts recorded together: one store transaction for every attempt that ended while
    the previous transaction was being written (group commit, led by the first caller).
    Each caller returns once its own attempt is recorded, or raises what the write raised."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._open = _Batch()  # what the next transaction writes
        self._leading = False

    async def record(self, outcome: AttemptOutcome) -> None:
        batch = self._open
        batch.outcomes.append(outcome)
        if not self._leading:
            self._leading = True
            try:
                while self._open.outcomes:  # until nobody waits: later callers' attempts too
                    current, self._open = self._open, _Batch()
                    try:
                        await self.store.record_attempts(current.outcomes)
                    except Exception as exc:
                        current.error = exc
                    finally:
                        current.done.set()
            finally:
                self._leading = False
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error


class DeliveryWorker:
    metrics: MetricsSink = NO_METRICS  # set by Services when metrics are on

    def __init__(self, store: Any, sealer: Sealer, cfg: WebhooksConfig, send: Send, now: Callable[[], datetime], owner: str,
                 close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store = store
        self._close = close
        self.sealer = sealer
        self.cfg = cfg
        self.send = send
        self.now = now
        self.owner = owner
        self._in_flight: dict[str, int] = {}  # webhook id -> attempts claimed, not yet recorded
        self._limiters: dict[str, trio.CapacityLimiter] = {}
        self._total = 0
        self._wake = trio.Event()
        self._records = AttemptRecorder(store)
        self.delivered = 0  # attempts recorded (metrics, tests)

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        structlog.contextvars.clear_contextvars()
        # Leases of owners that died on this machine are taken over now; any other owner's
        # (another live process's) stand until they expire (:mod:`engine.webhooks.owner`).
        released = await self.store.release_delivery_leases(self.now(), owner_is_dead)
        if released:
            log.info("webhook_leases_taken_over", deliveries=released)
        task_status.started()
        try:
            await self._loop()
        finally:
            if self._close is not None:
                with trio.CancelScope(shield=True):
                    await self._close()

    async def _loop(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    await self._claim_round(nursery)
                except Exception:
                    log.exception("webhook_claim_failed")
                    await trio.sleep(ERROR_BACKOFF_SECONDS)
                    continue
                # A claim takes every due delivery it has room for (per endpoint and in all), so
                # the next one waits for an attempt to end (wake) or the next due time.
                with trio.move_on_after(await self._idle_seconds()) as idle:
                    await self._wake.wait()
                self._wake = trio.Event()
                if not idle.cancelled_caught:
                    # Woken: let attempts that end together be answered by one claim, not
                    # one each (claims and due-time reads were a third of its store work).
                    await trio.sleep(CLAIM_COALESCE_SECONDS)

    async def _idle_seconds(self) -> float:
        """How long to wait before looking again: until the next due delivery, at most a poll."""
        try:
            due = await self.store.next_delivery_due()
        except Exception:
            log.exception("webhook_due_read_failed")
            return ERROR_BACKOFF_SECONDS
        wait = (due - self.now()).total_seconds() if due is not None else self.cfg.poll_seconds
        # Due already, yet nothing was claimed: its endpoint is busy or another process holds
        # it; an attempt ending wakes us, else the next poll.
        return self.cfg.poll_seconds if wait <= 0 else min(self.cfg.poll_seconds, wait)

    async def _claim_round(self, nursery: trio.Nursery) -> int:
        free = self.cfg.concurrency - self._total
        if free <= 0:
            return 0
        per = self.cfg.per_endpoint_concurrency
        busy = [hook for hook, n in self._in_flight.items() if n >= per]
        now = self.now()
        jobs = await self.store.claim_deliveries(self.owner, now, now + timedelta(seconds=self.cfg.lease_seconds), free, per, busy)
        for job in jobs:
            hook = job.webhook.id
            self._in_flight[hook] = self._in_flight.get(hook, 0) + 1
            self._total += 1
            nursery.start_soon(self._deliver, job)
        return len(jobs)

    def _secrets(self, job: DeliveryJob, now: datetime) -> list[str]:
        hook = job.webhook
        found = [self.sealer.open(hook.id, hook.secret_sealed)]
        if hook.previous_secret_sealed is not None and hook.previous_secret_expires_at is not None and hook.previous_secret_expires_at > now:
            found.append(self.sealer.open(hook.id, hook.previous_secret_sealed))
        return found

    async def _deliver(self, job: DeliveryJob) -> None:
        hook = job.webhook.id
        limiter = self._limiters.get(hook)
        if limiter is None:
            limiter = self._limiters[hook] = trio.CapacityLimiter(self.cfg.per_endpoint_concurrency)
        try:
            async with limiter:
                await self._attempt(job)
        except Exception:
            log.exception("webhook_attempt_failed", delivery_id=job.delivery.id, webhook_id=hook)
        finally:
            self._total -= 1
            self._in_flight[hook] -= 1
            if not self._in_flight[hook]:
                del self._in_flight[hook]
                self._limiters.pop(hook, None)
            self.wake()

    async def _attempt(self, job: DeliveryJob) -> None:
        started = self.now()
        stamp = int(started.timestamp())
        msg_id = job.delivery.event_id
        headers = {
            "content-type": "application/json",
            "user-agent": "ipto-webhooks/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature_header(self._secrets(job, started), msg_id, stamp, job.body),
        }
        result = await self.send(job.webhook.url, headers, job.body)
        outcome = decide(job, result, started, self.cfg.disable_after_seconds)
        with trio.CancelScope(shield=True):  # sent: record it even while stopping
            await self._records.record(outcome)
        self.delivered += 1
        self.metrics.webhook_delivered("succeeded" if outcome.succeeded else "gone" if outcome.disable_reason == "gone"
                                       else "retrying" if outcome.next_attempt_at else "failed")
        log.info("webhook_attempt", delivery_id=job.delivery.id, webhook_id=job.webhook.id, event_id=msg_id,
                 status_code=result.status_code, error=result.error, duration_ms=result.duration_ms,
                 succeeded=outcome.succeeded, next_attempt_at=str(outcome.next_attempt_at) if outcome.next_attempt_at else None)
