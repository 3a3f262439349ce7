"""Delivery leases with several processes: a starting delivery worker takes over at once the
leases of an owner that died on this machine, claims expired leases, and never touches a
live process's lease (the old start cleared every lease, so a second process sent what a
live one was sending). Either store: the same test runs on ``IPTO_TEST_BACKEND``."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import trio
import trio_asyncio

from engine.auth import Principal
from engine.config import WebhooksConfig
from engine.ids import utcnow
from engine.store import open_store
from engine.store.records import Membership, Tenant, User
from engine.webhooks.endpoints import Webhooks
from engine.webhooks.keys import Sealer
from engine.webhooks.owner import machine, new_owner, owner_is_dead
from engine.webhooks.sender import SendResult
from engine.webhooks.worker import DeliveryWorker, decide
from tests.conftest import make_config


def _owner(pid: int) -> str:
    return f"{machine()}:{pid}:0123456789ab"


def test_owners_alive_dead_and_unknown():
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        try:
            assert not owner_is_dead(_owner(alive.pid))
        finally:
            alive.kill()
    assert owner_is_dead(_owner(alive.pid))  # reaped: its PID is free
    mine = new_owner()
    assert not owner_is_dead(mine)
    assert owner_is_dead(mine[: mine.rindex(":")] + ":ffffffffffff")  # our PID, an earlier process's token
    assert not owner_is_dead(f"elsewhere/x/y:{alive.pid}:0123456789ab")  # another machine: wait for the expiry
    assert not owner_is_dead("host:123")  # not an owner this module made


def _start_time(pid: int) -> str:
    text = open(f"/proc/{pid}/stat").read()
    return text[text.rindex(")") + 2:].split()[19]


def test_a_killed_unreaped_owner_is_dead():
    """A process killed but not yet reaped (a zombie: after a ``kill -9`` of the engine its
    delivery process waits for the machine's init, seconds in some containers) is dead:
    its leases are taken over at once, not after they expire."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = f"{machine()}:{child.pid}:{_start_time(child.pid)}.0123456789ab"
        assert not owner_is_dead(owner)
        child.kill()
        deadline = time.monotonic() + 10  # the kernel makes it a zombie at once; we reap it below
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert owner_is_dead(owner)  # a zombie: its PID still answers kill(pid, 0)
    finally:
        child.kill()
        child.wait()


def test_a_pid_given_to_another_process_is_a_dead_owner():
    """The owner names its process's start time: a live PID that started at another time is
    another program that was given the PID after the owner died."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            started = int(_start_time(other.pid))
            assert not owner_is_dead(f"{machine()}:{other.pid}:{started}.0123456789ab")
            assert owner_is_dead(f"{machine()}:{other.pid}:{started - 1}.0123456789ab")
            assert not owner_is_dead(f"{machine()}:{other.pid}:?.0123456789ab")  # start unknown: alive
        finally:
            other.kill()


async def test_a_starting_worker_takes_over_dead_and_expired_leases_only(tmp_path):
    cfg = make_config(tmp_path / "data")
    cfg.data_dir.mkdir(parents=True)
    hooks_cfg = WebhooksConfig(allow_private_targets=True, poll_seconds=0.05)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other, \
            subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait()
        try:
            async with trio_asyncio.open_loop(), open_store(cfg) as store:
                now = utcnow()
                await store.create_account(Tenant("tnt_a", "A", now), User("usr_a", "a@example.com", None, "x", False, now),
                                           Membership("tnt_a", "usr_a", "owner", now))
                sealer = Sealer(b"k" * 32)
                principal = Principal("session", "usr_a", "tnt_a", frozenset(), ("owner",))
                await Webhooks(store, sealer, hooks_cfg, utcnow).create(principal, "http://127.0.0.1:9/hook", ["*"], None)
                for n in range(4):
                    await store.emit_event("tnt_a", "dataset.updated", {"n": n}, now + timedelta(milliseconds=n))
                hour = timedelta(hours=1)
                claims = [(_owner(other.pid), hour), (_owner(gone.pid), hour), (_owner(other.pid), -hour)]
                events = []
                for owner, lease in claims:  # each claim leases the oldest claimable delivery
                    t = utcnow()
                    (job,) = await store.claim_deliveries(owner, t, t + lease, 1, 1, [])
                    events.append(job.delivery.event_id)
                live, dead, expired = events
                sent: list[str] = []

                async def send(url, headers, body) -> SendResult:
                    sent.append(headers["webhook-id"])
                    return SendResult(204, None, 1.0, "")

                worker = DeliveryWorker(store, sealer, hooks_cfg, send, utcnow, new_owner())
                async with trio.open_nursery() as nursery:
                    await nursery.start(worker.run)
                    with trio.fail_after(30):  # a bound on waiting, not a performance figure
                        while len(sent) < 3:
                            await trio.sleep(0.02)
                    await trio.sleep(0.5)  # several more claim rounds: the live lease stays untouched
                    nursery.cancel_scope.cancel()
                assert dead in sent and expired in sent and live not in sent and len(sent) == 3
                assert await store.pending_deliveries() == 1
        finally:
            other.kill()


async def test_an_owner_whose_lease_was_taken_does_not_record_its_attempt(tmp_path):
    """A recorder that lost its lease (it expired and another owner claimed the delivery)
    writes nothing of its attempt: the new owner's attempt is the one recorded, once."""
    cfg = make_config(tmp_path / "data")
    cfg.data_dir.mkdir(parents=True)
    hooks_cfg = WebhooksConfig(allow_private_targets=True)
    async with trio_asyncio.open_loop(), open_store(cfg) as store:
        now = utcnow()
        await store.create_account(Tenant("tnt_a", "A", now), User("usr_a", "a@example.com", None, "x", False, now),
                                   Membership("tnt_a", "usr_a", "owner", now))
        principal = Principal("session", "usr_a", "tnt_a", frozenset(), ("owner",))
        hook = (await Webhooks(store, Sealer(b"k" * 32), hooks_cfg, utcnow).create(
            principal, "http://127.0.0.1:9/hook", ["*"], None)).webhook
        await store.emit_event("tnt_a", "dataset.updated", {"n": 1}, now)
        t = utcnow()
        (late,) = await store.claim_deliveries("late", t, t - timedelta(seconds=1), 1, 1, [])  # its lease has ended
        (taker,) = await store.claim_deliveries("taker", t, t + timedelta(hours=1), 1, 1, [])
        assert late.delivery.id == taker.delivery.id
        lost = decide(late, SendResult(204, None, 1.0, ""), t, hooks_cfg.disable_after_seconds)
        assert await store.record_attempts("late", [lost]) == set()
        kept = decide(taker, SendResult(500, None, 2.0, "no"), t, hooks_cfg.disable_after_seconds)
        assert await store.record_attempts("taker", [kept]) == {taker.delivery.id}
        delivery = await store.get_delivery("tnt_a", hook.id, taker.delivery.id)
        assert delivery is not None and delivery.attempts == 1 and delivery.last_status_code == 500
        assert delivery.status == "pending"  # to be retried, not "succeeded" as the lost attempt said
        attempts = (await store.delivery_attempts([taker.delivery.id]))[taker.delivery.id]
        assert [(a.attempt, a.status_code) for a in attempts] == [(1, 500)]
        assert await store.record_attempts("taker", [kept]) == set()  # recorded: its lease is gone too
