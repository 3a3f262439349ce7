"""The delivery process's store calls forwarded to the serving process (engine/webhooks/storelink.py):
a worker on the forwarded store delivers everything and takes over a dead owner's leases as on
its own store; a call whose sender dies before the answer is still carried out to its end (the
claim leases, the record is kept) and the serving end returns only after it; a sender whose
serving end goes away gets an error, not a hang. Either store: the link works on both (only
SQLite uses it in ``ipto serve``)."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta

import pytest
import trio
import trio_asyncio

from engine.actors.remote import encode_frame
from engine.auth import Principal
from engine.config import WebhooksConfig
from engine.ids import utcnow
from engine.store import open_store
from engine.store.records import Membership, Tenant, User
from engine.webhooks.endpoints import Webhooks
from engine.webhooks.keys import Sealer
from engine.webhooks.owner import machine, new_owner
from engine.webhooks.sender import SendResult
from engine.webhooks.storelink import ForwardedStore, LinkClosed, serve_store_link
from engine.webhooks.worker import DeliveryWorker, decide
from tests.conftest import make_config

HOOKS = WebhooksConfig(allow_private_targets=True, poll_seconds=0.05)


def _pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = socket.socketpair()
    return (trio.SocketStream(trio.socket.from_stdlib_socket(a)), trio.SocketStream(trio.socket.from_stdlib_socket(b)))


async def _tenant_with_hook(store, events: int) -> str:
    now = utcnow()
    await store.create_account(Tenant("tnt_a", "A", now), User("usr_a", "a@example.com", None, "x", False, now),
                               Membership("tnt_a", "usr_a", "owner", now))
    principal = Principal("session", "usr_a", "tnt_a", frozenset(), ("owner",))
    hook = (await Webhooks(store, Sealer(b"k" * 32), HOOKS, utcnow).create(principal, "http://127.0.0.1:9/hook", ["*"], None)).webhook
    for n in range(events):
        await store.emit_event("tnt_a", "dataset.updated", {"n": n}, now + timedelta(milliseconds=n))
    return hook.id


async def test_a_worker_on_the_forwarded_store_delivers_all_and_takes_over_dead_leases(tmp_path):
    cfg = make_config(tmp_path / "data")
    cfg.data_dir.mkdir(parents=True)
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait()
    async with trio_asyncio.open_loop(), open_store(cfg) as store:
        await _tenant_with_hook(store, 6)
        t = utcnow()
        (held,) = await store.claim_deliveries(f"{machine()}:{gone.pid}:0123456789ab", t, t + timedelta(hours=1), 1, 1, [])
        sent: list[str] = []

        async def send(url, headers, body) -> SendResult:
            sent.append(headers["webhook-id"])
            return SendResult(204, None, 1.0, "")

        counted: list[str] = []

        class Counting:
            def webhook_delivered(self, outcome: str) -> None:
                counted.append(outcome)

        theirs, ours = _pair()
        forwarded = ForwardedStore(theirs)
        worker = DeliveryWorker(forwarded, Sealer(b"k" * 32), HOOKS, send, utcnow, new_owner())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_store_link, ours, store, Counting())
            await nursery.start(forwarded.run)
            await nursery.start(worker.run)
            with trio.fail_after(30):  # a bound on waiting, not a performance figure
                while worker.delivered < 6:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        assert held.delivery.event_id in sent  # the dead owner's lease, taken over at once
        assert len(set(sent)) == 6
        assert counted == ["succeeded"] * 6  # counted by the serving end, where the attempts are recorded
        assert await store.pending_deliveries() == 0


async def test_a_forwarded_call_whose_sender_dies_is_carried_out(tmp_path):
    """The delivery process sends a claim and a record and dies before either answer: the
    serving end runs both to their end, and returns only after them."""
    cfg = make_config(tmp_path / "data")
    cfg.data_dir.mkdir(parents=True)
    async with trio_asyncio.open_loop(), open_store(cfg) as store:
        hook_id = await _tenant_with_hook(store, 2)
        t = utcnow()
        (first,) = await store.claim_deliveries("dying", t, t + timedelta(hours=1), 1, 1, [])
        outcome = decide(first, SendResult(204, None, 1.0, ""), t, HOOKS.disable_after_seconds)
        theirs, ours = _pair()
        await theirs.send_all(encode_frame((0, ("record_attempts", ("dying", [outcome])))))
        await theirs.send_all(encode_frame((1, ("claim_deliveries", ("dying", t, t + timedelta(hours=1), 5, 5, [])))))
        await theirs.aclose()  # gone before any answer
        with trio.fail_after(30):
            await serve_store_link(ours, store)
        recorded = await store.get_delivery("tnt_a", hook_id, first.delivery.id)
        assert recorded is not None and recorded.status == "succeeded" and recorded.attempts == 1
        # The second delivery was leased to the dead sender by the claim: nobody else claims it
        # before its lease ends (a new delivery process takes it over as a dead owner's).
        assert await store.claim_deliveries("other", utcnow(), utcnow() + timedelta(hours=1), 5, 5, []) == []
        assert await store.pending_deliveries() == 1


async def test_a_sender_whose_serving_end_goes_gets_an_error_not_a_hang():
    theirs, ours = _pair()
    forwarded = ForwardedStore(theirs)
    async with trio.open_nursery() as nursery:
        await nursery.start(forwarded.run)

        async def serve_then_vanish() -> None:
            await ours.receive_some(65536)  # the call arrives; the serving process dies before answering
            await ours.aclose()

        nursery.start_soon(serve_then_vanish)
        with trio.fail_after(10), pytest.raises(LinkClosed):
            await forwarded.next_delivery_due()
        with pytest.raises(LinkClosed):
            await forwarded.record_attempts("o", [])


async def test_a_delivery_due_since_the_last_claim_is_claimed_without_waiting_for_the_poll():
    """A forwarded claim runs some milliseconds after its ``now``: an event written meanwhile is
    due when the worker, idle, next reads the due time. It claims again at once instead of
    sleeping a whole poll (60 s here); a due time the last claim already saw waits for the poll."""
    claims: list[object] = []

    class Store:
        async def release_delivery_leases(self, now, is_dead) -> int:
            return 0

        async def claim_deliveries(self, owner, now, lease_until, limit, per_webhook, busy):
            claims.append(now)
            await trio.sleep(0.01)  # the round trip: the clock moves on meanwhile
            return []

        async def next_delivery_due(self):
            return claims[0] + timedelta(microseconds=1) if len(claims) == 1 else claims[0]

        async def record_attempts(self, owner, outcomes) -> set[str]:
            return set()

    async def send(url, headers, body) -> SendResult:
        raise AssertionError("nothing to send")

    worker = DeliveryWorker(Store(), Sealer(b"k" * 32), WebhooksConfig(poll_seconds=60), send, utcnow, new_owner())
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        with trio.fail_after(10):  # a bound on waiting, well under the poll; not a performance figure
            while len(claims) < 2:
                await trio.sleep(0.01)
        await trio.sleep(0.3)  # the due time the second claim saw: no third claim before the poll
        nursery.cancel_scope.cancel()
    assert len(claims) == 2
