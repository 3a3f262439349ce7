"""The search recorder commits at its interval under load; its item count only bounds memory."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from engine.ids import utcnow
from engine.market import recorder as recorder_module
from engine.market.recorder import Recorder
from engine.store.records import Impression, SearchRecord


class _Store:
    def __init__(self) -> None:
        self.batches: list[tuple[float, int, int]] = []

    async def record_searches(self, searches: list[SearchRecord], impressions: list[Impression], more: Any) -> None:
        self.batches.append((trio.current_time(), len(searches), len(impressions)))


def _search(n: int) -> tuple[SearchRecord, list[Impression]]:
    now = utcnow()
    sid = f"srch_{n:012d}"
    record = SearchRecord(sid, "ten_b", "usr_b", None, "q", "lexical", (), ("q",), 10, now)
    return record, [Impression(sid, rank, "ds_a", "ten_p", "ten_b", "obj_a", rank, now) for rank in range(1, 11)]


async def test_a_steady_load_commits_once_an_interval_not_once_per_few_hundred_items(autojump_clock: trio.testing.MockClock) -> None:
    store = _Store()
    rec = Recorder(store, flush_seconds=0.5)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(rec.run)
        for n in range(1000):  # 11,000 items in 2 s: 500 searches/s with 10 results each
            rec.add(*_search(n))
            await trio.sleep(0.002)
        await trio.sleep(0.6)
        nursery.cancel_scope.cancel()
    assert sum(b[1] for b in store.batches) == 1000 and sum(b[2] for b in store.batches) == 10_000
    assert 4 <= len(store.batches) <= 6  # one commit each 0.5 s, not one each 500 items (22)


async def test_the_item_bound_flushes_at_once_when_the_buffer_is_full(
    monkeypatch: Any, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setattr(recorder_module, "FLUSH_ITEMS", 110)
    store = _Store()
    rec = Recorder(store, flush_seconds=3600)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(rec.run)
        for n in range(9):
            rec.add(*_search(n))
        await trio.sleep(1)
        assert store.batches == []  # 99 items: waits for the interval
        rec.add(*_search(9))
        await trio.sleep(0.01)
        assert [b[1:] for b in store.batches] == [(10, 100)]
        nursery.cancel_scope.cancel()
