"""The outbox's ids start with their creation time: an event and its deliveries
made later sort after earlier ones, so they go in at the end of the ``id`` indexes (random ids
put each on a random page, rewritten into the WAL at every commit under fan-out). Either store."""

from __future__ import annotations

from datetime import timedelta

import trio_asyncio

from engine.auth import Principal
from engine.config import WebhooksConfig
from engine.ids import utcnow
from engine.store import open_store
from engine.store.records import Membership, Tenant, User
from engine.webhooks.endpoints import Webhooks
from engine.webhooks.keys import Sealer
from tests.conftest import make_config


async def test_later_events_and_deliveries_sort_after_earlier_ones(tmp_path):
    cfg = make_config(tmp_path / "data")
    cfg.data_dir.mkdir(parents=True)
    hooks_cfg = WebhooksConfig(allow_private_targets=True)
    async with trio_asyncio.open_loop(), open_store(cfg) as store:
        now = utcnow()
        await store.create_account(Tenant("tnt_a", "A", now), User("usr_a", "a@example.com", None, "x", False, now),
                                   Membership("tnt_a", "usr_a", "owner", now))
        principal = Principal("session", "usr_a", "tnt_a", frozenset(), ("owner",))
        for _ in range(2):
            await Webhooks(store, Sealer(b"k" * 32), hooks_cfg, utcnow).create(principal, "http://127.0.0.1:9/hook", ["*"], None)
        for n in range(5):
            await store.emit_event("tnt_a", "dataset.updated", {"n": n}, now + timedelta(milliseconds=n))
        t = utcnow() + timedelta(seconds=1)
        jobs = await store.claim_deliveries("o", t, t + timedelta(hours=1), 100, 100, [])
    assert len(jobs) == 10
    by_time = sorted(jobs, key=lambda j: (j.delivery.created_at, j.delivery.id))
    assert [j.delivery.id for j in by_time] == sorted(j.delivery.id for j in jobs)
    assert [j.delivery.event_id for j in by_time] == sorted(j.delivery.event_id for j in jobs)
    assert all(j.delivery.id.startswith("dlv_") and j.delivery.event_id.startswith("evt_") for j in jobs)
