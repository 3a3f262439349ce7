"""The retry schedule on Trio's virtual clock: growing delays over ~3 days, then the
endpoint is disabled; 410 disables at once; a success ends a failure streak. The worker
runs for real on a real (SQLite) store; only sending and the clock are stand-ins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import trio

from engine.auth import Principal
from engine.config import WebhooksConfig
from engine.store.records import Membership, Tenant, User
from engine.store.sqlite.store import SqliteStore
from engine.webhooks.endpoints import Webhooks
from engine.webhooks.keys import Sealer
from engine.webhooks.sender import SendResult
from engine.webhooks.worker import RETRY_DELAYS_SECONDS, DeliveryWorker

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = 86400


@pytest.fixture(name="clock")
def _clock(autojump_clock):
    # Jump only when the loop has been idle a moment: SQLite's fsync runs on a thread,
    # and the clock must not leap past the worker's deadline while one is under way.
    autojump_clock.autojump_threshold = 0.05
    return autojump_clock


def _now() -> datetime:
    return START + timedelta(seconds=trio.current_time())


class Receiver:
    """Answers with the codes given, in turn (the last one forever after)."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.calls: list[datetime] = []

    async def send(self, url, headers, body) -> SendResult:
        self.calls.append(_now())
        code = self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]
        return SendResult(code, None, 1.0, "")


async def _setup(tmp_path, receiver):
    cfg = WebhooksConfig(allow_private_targets=True, poll_seconds=10 * DAY)
    store_cm = SqliteStore.open(tmp_path / "engine.db")
    store = await store_cm.__aenter__()
    await store.create_account(Tenant("tnt_a", "A", START), User("usr_a", "a@example.com", None, "x", False, START),
                               Membership("tnt_a", "usr_a", "owner", START))
    sealer = Sealer(b"k" * 32)
    hooks = Webhooks(store, sealer, cfg, _now)
    principal = Principal("session", "usr_a", "tnt_a", frozenset(), ("owner",))
    created = await hooks.create(principal, "http://127.0.0.1:9/hook", ["*"], None)
    worker = DeliveryWorker(store, sealer, cfg, receiver.send, _now, "test-owner")
    return store_cm, store, hooks, principal, created.webhook, worker


async def test_retries_grow_over_three_days_then_the_endpoint_is_disabled(tmp_path, clock):
    receiver = Receiver(500)
    store_cm, store, hooks, principal, hook, worker = await _setup(tmp_path, receiver)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await store.emit_event("tnt_a", "dataset.updated", {"n": 1}, _now())
            worker.wake()
            await trio.sleep(5 * DAY)
            nursery.cancel_scope.cancel()
        gaps = [(b - a).total_seconds() for a, b in zip(receiver.calls, receiver.calls[1:], strict=False)]
        assert gaps == list(RETRY_DELAYS_SECONDS)  # 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 21 h
        assert 3 * DAY <= (receiver.calls[-1] - receiver.calls[0]).total_seconds() < 3.1 * DAY
        (delivery,) = (await hooks.deliveries(principal, hook.id, None, 10)).items
        assert delivery.delivery.status == "failed" and delivery.delivery.attempts == len(RETRY_DELAYS_SECONDS) + 1
        assert [a.status_code for a in delivery.attempts] == [500] * (len(RETRY_DELAYS_SECONDS) + 1)
        view = await hooks.get(principal, hook.id)
        assert view.status == "disabled" and view.disabled_reason == "failing" and view.failing_since == receiver.calls[0]
    finally:
        await store_cm.__aexit__(None, None, None)


async def test_a_success_ends_the_failure_streak(tmp_path, clock):
    receiver = Receiver(500, 500, 500, 200)
    store_cm, store, hooks, principal, hook, worker = await _setup(tmp_path, receiver)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await store.emit_event("tnt_a", "dataset.updated", {"n": 1}, _now())
            worker.wake()
            await trio.sleep(1 * DAY)
            view = await hooks.get(principal, hook.id)
            assert view.status == "enabled" and view.failing_since is None
            # Three days later a new failure starts a new streak: not disabled at once.
            receiver.codes = [500]
            await trio.sleep(3 * DAY)
            await store.emit_event("tnt_a", "dataset.updated", {"n": 2}, _now())
            worker.wake()
            await trio.sleep(60)
            view = await hooks.get(principal, hook.id)
            assert view.status == "enabled" and view.failing_since is not None
            nursery.cancel_scope.cancel()
        assert len(receiver.calls) >= 5
    finally:
        await store_cm.__aexit__(None, None, None)


async def test_410_disables_at_once_and_the_rest_wait(tmp_path, clock):
    receiver = Receiver(410)
    store_cm, store, hooks, principal, hook, worker = await _setup(tmp_path, receiver)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await store.emit_event("tnt_a", "dataset.updated", {"n": 1}, _now())
            worker.wake()
            await trio.sleep(DAY)
            nursery.cancel_scope.cancel()
        assert len(receiver.calls) == 1
        view = await hooks.get(principal, hook.id)
        assert view.status == "disabled" and view.disabled_reason == "gone"
    finally:
        await store_cm.__aexit__(None, None, None)


async def test_finished_deliveries_are_forgotten_after_the_retention(tmp_path, clock):
    receiver = Receiver(200)
    store_cm, store, hooks, principal, hook, worker = await _setup(tmp_path, receiver)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await store.emit_event("tnt_a", "dataset.updated", {"n": 1}, _now())
            worker.wake()
            await trio.sleep(60)
            await hooks.store.update_webhook("tnt_a", hook.id, {"status": "disabled"})
            await store.emit_event("tnt_a", "dataset.updated", {"n": 2}, _now())  # no enabled endpoint: nothing queued
            await hooks.store.update_webhook("tnt_a", hook.id, {"status": "enabled"})
            nursery.cancel_scope.cancel()
        assert len((await hooks.deliveries(principal, hook.id, None, 10)).items) == 1
        assert await hooks.purge_log() == 0  # younger than 30 days
        hooks.now = lambda: _now() + timedelta(days=31)
        assert await hooks.purge_log() == 1
        assert (await hooks.deliveries(principal, hook.id, None, 10)).items == []
        assert await store.read(lambda c: c.execute("SELECT count(*) FROM webhook_events").fetchone()[0]) == 0
    finally:
        await store_cm.__aexit__(None, None, None)


async def test_a_claim_takes_each_endpoints_oldest_due_deliveries_up_to_its_share(tmp_path, clock):
    """Per endpoint at most ``per_webhook``, oldest first, overall at most ``limit``; a busy
    endpoint is passed over; what one owner leased another does not get until the lease ends."""
    store_cm, store, hooks, principal, first, _ = await _setup(tmp_path, Receiver(204))
    try:
        second = (await hooks.create(principal, "http://127.0.0.1:9/other", ["*"], None)).webhook
        for n in range(6):
            await store.emit_event("tnt_a", "dataset.updated", {"n": n}, _now())
        now, lease = _now(), _now() + timedelta(seconds=60)
        jobs = await store.claim_deliveries("one", now, lease, 5, 2, [])
        by_hook: dict[str, list[int]] = {}
        for job in jobs:
            by_hook.setdefault(job.webhook.id, []).append(job.delivery.seq)
        assert sorted(by_hook) == sorted([first.id, second.id]) and all(len(seqs) == 2 for seqs in by_hook.values())
        assert all(seqs == sorted(seqs) for seqs in by_hook.values())
        firsts = {h: min(seqs) for h, seqs in by_hook.items()}
        jobs_again = await store.claim_deliveries("two", now, lease, 10, 10, [first.id])
        assert {j.webhook.id for j in jobs_again} == {second.id}  # the busy one is passed over
        assert not {j.delivery.id for j in jobs_again} & {j.delivery.id for j in jobs}  # leased ones are not claimed twice
        assert len(jobs_again) == 4 and min(j.delivery.seq for j in jobs_again) > firsts[second.id]
        after_lease = await store.claim_deliveries("three", lease + timedelta(seconds=1), lease + timedelta(seconds=61), 20, 20, [])
        assert len(after_lease) == 12  # every lease ended: all six events to both endpoints are claimable again
    finally:
        await store_cm.__aexit__(None, None, None)
