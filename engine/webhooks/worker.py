"""The delivery worker: claims due deliveries, sends them, records what happened.

Supervised in the service (started under the actors' supervisor; a failing round is
logged and retried, never fatal). Every process runs one; on PostgreSQL they share the
work through leased claims (``FOR UPDATE SKIP LOCKED``). A claim leases a delivery to its
owner (:mod:`.owner`) for ``lease_seconds``; a dead process's leases expire so another takes
over, and a starting worker takes over at once those of owners it can prove dead (never a
live process's): delivery is at least once, retries carry the same ``webhook-id``.

How the work is shaped (the CPU per delivery is what fan-out costs, bench/README.md
"Webhook fan-out"): one claim transaction leases a batch (up to ``per_endpoint_concurrency``
× a few per endpoint, so the last one waiting is sent well within its lease); each endpoint
has long-lived sending loops (one kept-alive connection each, at most
``per_endpoint_concurrency``) that send its claimed deliveries one after another, so a slow
receiver holds only its own loops; the outcomes go to one :class:`AttemptRecorder` that
writes them in one transaction per batch, only for the deliveries this owner still holds
the lease of (one whose lease expired and was claimed by another is that owner's to
record). A claim round follows each recorded batch; the due time is read only when nothing
is under way.

Schedule (Standard Webhooks' style, growing delays over ~3 days): the first attempt at
once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 21 h (72.6 h in all).
A ``410 Gone`` disables the endpoint at once; an endpoint whose attempts have failed
without a success for ``disable_after_seconds`` (3 days) is disabled. Disabled endpoints'
deliveries wait (visible in the log) and go on if it is enabled again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
import trio

from engine.config import WebhooksConfig
from engine.metrics import NO_METRICS, MetricsSink
from engine.store.webhook_records import Attempt, AttemptOutcome, DeliveryJob
from engine.webhooks.keys import Sealer, secret_bytes, signature_header
from engine.webhooks.owner import owner_is_dead
from engine.webhooks.sender import SendResult

log = structlog.get_logger(__name__)

RETRY_DELAYS_SECONDS: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 75600)
ERROR_BACKOFF_SECONDS = 5.0
CLAIM_COALESCE_SECONDS = 0.02  # woken by a recorded batch: claim once for what ends meanwhile
# Attempts ending this close together are recorded in one transaction: fewer, larger write
# transactions (with ``own_process`` on SQLite each takes the file lock the serving process needs).
RECORD_COALESCE_SECONDS = 0.02
LANE_IDLE_SECONDS = 30.0  # an endpoint's sending loop with nothing to send ends after this
QUEUE_FACTOR = 4  # deliveries claimed per endpoint: up to this many per connection, waiting their turn
MAX_OPEN_SECRETS = 1024  # opened secrets kept (by sealed bytes)

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


class AttemptRecorder:
    """Attempts recorded together, off the senders' path: :meth:`submit` queues an outcome
    and returns; :meth:`run` writes everything queued in one store transaction (with the
    lease check: ``record_attempts(owner, …)``), then the next batch (whatever ended while
    that one was written), and calls ``done(batch, recorded_ids)`` after each
    (``recorded_ids`` None: the write failed). :meth:`close` writes what is queued and ends it."""

    def __init__(self, store: Any, owner: str, done: Callable[[list[AttemptOutcome], set[str] | None], None]) -> None:
        self.store = store
        self.owner = owner
        self._done = done
        self._queued: list[AttemptOutcome] = []
        self._ready = trio.Event()
        self._closed = False

    def submit(self, outcome: AttemptOutcome) -> None:
        self._queued.append(outcome)
        self._ready.set()

    def close(self) -> None:
        """Write what is queued, then end :meth:`run`."""
        self._closed = True
        self._ready.set()

    async def run(self) -> None:
        """Until :meth:`close`: shielded, since an attempt sent must be recorded even while
        stopping (the senders stop first; then this writes what they left)."""
        with trio.CancelScope(shield=True):
            while True:
                await self._ready.wait()
                if not self._closed:
                    await trio.sleep(RECORD_COALESCE_SECONDS)  # let the attempts ending meanwhile join this transaction
                self._ready = trio.Event()
                await self._write()
                if self._closed:
                    return

    async def _write(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            recorded: set[str] | None = None
            try:
                recorded = await self.store.record_attempts(self.owner, batch)
            except Exception:
                log.exception("webhook_record_failed", attempts=len(batch))
            self._done(batch, recorded)


class _Endpoint:
    """One endpoint's claimed deliveries waiting their turn, and the loops that send them
    (one connection each, at most ``per_endpoint_concurrency``)."""

    __slots__ = ("queue", "loops", "lot", "claimed")

    def __init__(self) -> None:
        self.queue: deque[DeliveryJob] = deque()
        self.loops = 0
        self.lot = trio.lowlevel.ParkingLot()  # idle loops wait here
        self.claimed = 0  # claimed and not yet recorded


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
        self._endpoints: dict[str, _Endpoint] = {}
        self._hook_of: dict[str, str] = {}  # delivery id -> its endpoint's, while claimed
        self._claimed = 0  # in all: claimed, not yet recorded
        self._loops = 0  # sending loops in all (at most ``concurrency``)
        self._keys: dict[bytes, bytes] = {}  # sealed secret -> its HMAC key
        # Claimed per endpoint: more than its connections, so a claim feeds several attempts
        # per connection; bounded so the last one waiting is sent well within its lease
        # even if every attempt before it takes the whole timeout.
        turns = int(cfg.lease_seconds // (2 * cfg.timeout_seconds)) if cfg.timeout_seconds > 0 else QUEUE_FACTOR
        self._per_claim = cfg.per_endpoint_concurrency * max(1, min(QUEUE_FACTOR, turns))
        self._max_claimed = cfg.concurrency * max(1, min(QUEUE_FACTOR, turns))
        self._wake = trio.Event()
        self._claimed_upto: datetime | None = None  # the ``now`` of the last claim: what was due then, it saw
        self._records = AttemptRecorder(store, owner, self._recorded)
        self._nursery: trio.Nursery | None = None
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
            async with trio.open_nursery() as recording:
                recording.start_soon(self._records.run)
                try:
                    await self._loop()
                finally:
                    self._records.close()  # the senders have stopped: it writes what they queued, and ends
        finally:
            if self._close is not None:
                with trio.CancelScope(shield=True):
                    await self._close()

    async def _loop(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                try:
                    await self._claim_round()
                except Exception:
                    log.exception("webhook_claim_failed")
                    await trio.sleep(ERROR_BACKOFF_SECONDS)
                    continue
                # A claim takes every due delivery it has room for (per endpoint and in all), so
                # the next one waits for attempts to be recorded (wake) or the next due time;
                # the due time is only read when nothing is under way.
                wait = self.cfg.poll_seconds if self._claimed else await self._idle_seconds()
                with trio.move_on_after(wait) as idle:
                    await self._wake.wait()
                self._wake = trio.Event()
                if not idle.cancelled_caught:
                    # Woken: let attempts that end together be answered by one claim.
                    await trio.sleep(CLAIM_COALESCE_SECONDS)

    async def _idle_seconds(self) -> float:
        """How long to wait before looking again: until the next due delivery, at most a poll."""
        try:
            due = await self.store.next_delivery_due()
        except Exception:
            log.exception("webhook_due_read_failed")
            return ERROR_BACKOFF_SECONDS
        now = self.now()
        if due is not None and self._claimed_upto is not None and self._claimed_upto < due <= now:
            # Due since the last claim's instant: written while that claim was under way (it
            # runs some milliseconds after its ``now``, queued for the store's write lock).
            # Claim again soon, not at the next poll, which would hold it a whole second.
            return CLAIM_COALESCE_SECONDS
        wait = (due - now).total_seconds() if due is not None else self.cfg.poll_seconds
        # Due already (at the last claim's instant), yet nothing was claimed: its endpoint is
        # busy or another process holds it; an attempt ending wakes us, else the next poll.
        return self.cfg.poll_seconds if wait <= 0 else min(self.cfg.poll_seconds, wait)

    async def _claim_round(self) -> int:
        free = self._max_claimed - self._claimed
        if free <= 0:
            return 0
        per = self._per_claim
        busy = [hook for hook, ep in self._endpoints.items() if ep.claimed >= per]
        now = self._claimed_upto = self.now()
        jobs = await self.store.claim_deliveries(self.owner, now, now + timedelta(seconds=self.cfg.lease_seconds), free, per, busy)
        touched: dict[str, _Endpoint] = {}
        for job in jobs:
            hook = job.webhook.id
            ep = self._endpoints.get(hook)
            if ep is None:
                ep = self._endpoints[hook] = _Endpoint()
            ep.queue.append(job)
            self._hook_of[job.delivery.id] = hook
            ep.claimed += 1
            self._claimed += 1
            touched[hook] = ep
        for hook, ep in touched.items():
            self._feed(hook, ep)
        return len(jobs)

    def _feed(self, hook: str, ep: _Endpoint) -> None:
        """Wake idle loops for what waits, and start loops (connections) for the rest, within bounds."""
        waiting = len(ep.queue) - len(ep.lot.unpark(count=len(ep.queue)))
        assert self._nursery is not None
        while waiting > 0 and ep.loops < self.cfg.per_endpoint_concurrency and self._loops < self.cfg.concurrency:
            ep.loops += 1
            self._loops += 1
            self._nursery.start_soon(self._lane, hook, ep)
            waiting -= 1

    async def _lane(self, hook: str, ep: _Endpoint) -> None:
        """One endpoint's sending loop: its queued deliveries one after another, on one
        kept-alive connection; a slow receiver holds its own loops, never another endpoint's."""
        try:
            while True:
                if not ep.queue:
                    with trio.move_on_after(LANE_IDLE_SECONDS) as idle:
                        await ep.lot.park()
                    if idle.cancelled_caught:
                        return
                    continue  # woken: unless another loop took it first
                job = ep.queue.popleft()
                try:
                    self._records.submit(await self._attempt(job))
                except Exception:
                    log.exception("webhook_attempt_failed", delivery_id=job.delivery.id, webhook_id=hook)
                    self._release(job.delivery.id)
        finally:
            ep.loops -= 1
            self._loops -= 1
            self._forget(hook, ep)

    def _release(self, delivery_id: str) -> None:
        """The delivery is no longer under way here (recorded, or given up until its lease expires)."""
        hook = self._hook_of.pop(delivery_id)
        ep = self._endpoints.get(hook)
        if ep is not None:
            ep.claimed -= 1
            self._forget(hook, ep)
        self._claimed -= 1

    def _forget(self, hook: str, ep: _Endpoint) -> None:
        if not ep.loops and not ep.claimed and self._endpoints.get(hook) is ep:
            del self._endpoints[hook]

    def _recorded(self, batch: list[AttemptOutcome], recorded: set[str] | None) -> None:
        """After a batch's write (``recorded`` None: it failed, and those deliveries are
        claimed again when their leases expire)."""
        for outcome in batch:
            self._release(outcome.attempt.delivery_id)
            if recorded is None:
                continue
            if outcome.attempt.delivery_id not in recorded:
                log.warning("webhook_attempt_not_recorded", delivery_id=outcome.attempt.delivery_id,
                            reason="lease lost, or the delivery was retried by hand or deleted meanwhile")
                continue
            self.delivered += 1
            self.metrics.webhook_delivered("succeeded" if outcome.succeeded else "gone" if outcome.disable_reason == "gone"
                                           else "retrying" if outcome.next_attempt_at else "failed")
        self.wake()

    def _key(self, webhook_id: str, sealed: bytes) -> bytes:
        key = self._keys.get(sealed)
        if key is None:
            if len(self._keys) >= MAX_OPEN_SECRETS:
                self._keys.clear()
            key = self._keys[sealed] = secret_bytes(self.sealer.open(webhook_id, sealed))
        return key

    def _signing_keys(self, job: DeliveryJob, now: datetime) -> list[bytes]:
        hook = job.webhook
        found = [self._key(hook.id, hook.secret_sealed)]
        if hook.previous_secret_sealed is not None and hook.previous_secret_expires_at is not None and hook.previous_secret_expires_at > now:
            found.append(self._key(hook.id, hook.previous_secret_sealed))
        return found

    async def _attempt(self, job: DeliveryJob) -> AttemptOutcome:
        started = self.now()
        stamp = int(started.timestamp())
        msg_id = job.delivery.event_id
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature_header(self._signing_keys(job, started), msg_id, stamp, job.body),
        }
        result = await self.send(job.webhook.url, headers, job.body)
        outcome = decide(job, result, started, self.cfg.disable_after_seconds)
        # A success at debug (the delivery log has it; one line per attempt at info was a large
        # share of a delivery's CPU under fan-out), a failure at info.
        (log.info if not outcome.succeeded else log.debug)(
            "webhook_attempt", delivery_id=job.delivery.id, webhook_id=job.webhook.id, event_id=msg_id,
            status_code=result.status_code, error=result.error, duration_ms=result.duration_ms,
            succeeded=outcome.succeeded, next_attempt_at=str(outcome.next_attempt_at) if outcome.next_attempt_at else None)
        return outcome
