"""Leases between processes, on a real PostgreSQL: two ``Leases`` with different owners
stand for two engine processes sharing one store."""

from __future__ import annotations

import trio
import trio_asyncio

from engine.actors.leases import Leases
from engine.store.postgres.store import PgStore
from tests.conftest import backend_overrides


async def _two(ttl: float = 2.0):
    url = backend_overrides()["store.url"]
    return url, ttl


async def test_one_holder_at_a_time_and_release_wakes_the_waiter():
    url, ttl = await _two()
    async with trio_asyncio.open_loop(), PgStore.open(url) as store, trio.open_nursery() as nursery:
        a, b = Leases(store, ttl, owner="a"), Leases(store, ttl, owner="b")
        await nursery.start(a.run)
        await nursery.start(b.run)
        order: list[str] = []
        release_a = trio.Event()

        async def hold_a(*, task_status=trio.TASK_STATUS_IGNORED):
            async with a.hold("dataset:x", wait=True):
                order.append("a got it")
                task_status.started()
                await release_a.wait()
                order.append("a releases")

        await nursery.start(hold_a)
        async with b.hold("dataset:x", wait=False) as got:
            assert got is False  # held by the other process
        with trio.fail_after(10):
            async with trio.open_nursery() as inner:
                inner.start_soon(_hold_then_note, b, order)
                await trio.sleep(0.3)
                release_a.set()
        # b got it only after a released it, woken by the release notification (well before a poll).
        assert order == ["a got it", "a releases", "b got it"]
        nursery.cancel_scope.cancel()


async def _hold_then_note(leases: Leases, order: list[str]) -> None:
    async with leases.hold("dataset:x", wait=True):
        order.append("b got it")


async def test_a_waiter_asks_the_holder_to_hand_over():
    url, ttl = await _two()
    async with trio_asyncio.open_loop(), PgStore.open(url) as store, trio.open_nursery() as nursery:
        a, b = Leases(store, ttl, owner="a"), Leases(store, ttl, owner="b")
        await nursery.start(a.run)
        await nursery.start(b.run)
        asked = trio.Event()

        async def hold_a(*, task_status=trio.TASK_STATUS_IGNORED):
            async with a.hold("dataset:y", wait=True, on_wanted=asked.set):
                task_status.started()
                await asked.wait()  # like an actor: hand over once asked (and the inbox is empty)

        await nursery.start(hold_a)
        with trio.fail_after(10):
            async with b.hold("dataset:y", wait=True) as got:
                assert got and asked.is_set()
        nursery.cancel_scope.cancel()


async def test_a_dead_holders_lease_is_taken_over_after_its_ttl():
    url, ttl = await _two(ttl=1.0)
    async with trio_asyncio.open_loop(), PgStore.open(url) as store, trio.open_nursery() as nursery:
        b = Leases(store, ttl, owner="b")
        await nursery.start(b.run)
        # "a" took the lease and died: no heartbeat, no release.
        assert await store.acquire_lease("job:z", "a", ttl)
        async with b.hold("job:z", wait=False) as got:
            assert got is False
        start = trio.current_time()
        with trio.fail_after(10):
            async with b.hold("job:z", wait=True) as got:
                assert got
        assert trio.current_time() - start >= 0.5  # not before the dead holder's ttl ran out
        nursery.cancel_scope.cancel()


async def test_heartbeats_keep_a_lease_past_its_ttl_and_the_same_process_queues_its_holds():
    url, ttl = await _two(ttl=0.6)
    async with trio_asyncio.open_loop(), PgStore.open(url) as store, trio.open_nursery() as nursery:
        a, b = Leases(store, ttl, owner="a"), Leases(store, ttl, owner="b")
        await nursery.start(a.run)
        async with a.hold("imports:q", wait=True) as got:
            assert got
            await trio.sleep(ttl * 4)  # renewed by the heartbeat meanwhile
            assert not await store.acquire_lease("imports:q", "b", ttl)
            async with a.hold("imports:q", wait=False) as again:
                assert again is False  # one holder per name inside a process too
        assert await store.acquire_lease("imports:q", "b", ttl)  # released on exit
        del b
        nursery.cancel_scope.cancel()


async def test_scans_share_unheld_jobs_out_and_skip_held_ones():
    url, ttl = await _two(ttl=30.0)
    async with trio_asyncio.open_loop(), PgStore.open(url) as store:
        async def seed(c):
            await c.execute("INSERT INTO tenants (id, name, created_at) VALUES ('tnt_1', 't', now())")
            await c.execute(
                "INSERT INTO datasets (id, tenant_id, name, source_modality, monetization_mode, pricing_model, visibility,"
                " status, created_at, updated_at) VALUES ('dset_1', 'tnt_1', 'd', 'document', 'open', 'free', 'private',"
                " 'ingesting', now(), now())"
            )
            for i in range(20):
                status = "succeeded" if i % 5 == 4 else "queued"
                await c.execute("INSERT INTO jobs (id, tenant_id, dataset_id, type, status, created_at)"
                                " VALUES (?, 'tnt_1', 'dset_1', 'pipeline', ?, now())", f"job_{i:02}", status)

        await store.write(seed)
        assert await store.acquire_lease("job:job_00", "busy", ttl)  # a live holder keeps its job
        claimed: dict[str, list[str]] = {}

        async def scan(owner: str) -> None:
            claimed[owner] = [j.id for j in await store.claim_unheld_jobs("pipeline", owner, ttl, limit=20)]

        async with trio.open_nursery() as nursery:
            for owner in ("a", "b", "c"):
                nursery.start_soon(scan, owner)
        everyone = [job for jobs in claimed.values() for job in jobs]
        unfinished = [f"job_{i:02}" for i in range(1, 20) if i % 5 != 4]
        assert sorted(everyone) == unfinished  # each unheld job to exactly one scanner
        for jobs in claimed.values():
            assert jobs == sorted(jobs)  # in creation order
        again = await store.claim_unheld_jobs("pipeline", "d", ttl)
        assert again == []  # all leased now
