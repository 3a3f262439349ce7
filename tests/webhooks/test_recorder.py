"""Attempts are recorded in batches, off the senders' path: ``submit`` returns at once; one
store transaction writes every attempt that ended while the previous one was being
written; a failed write is reported to ``done`` (and the recorder goes on); closing writes
what is queued, even while the worker is being cancelled."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import trio

from engine.webhooks.worker import RECORD_COALESCE_SECONDS, AttemptRecorder


def _outcome(n: int) -> Any:
    return SimpleNamespace(attempt=SimpleNamespace(delivery_id=f"dlv_{n}"))


class SlowStore:
    """Records the size of each batch; a write takes a while (as a transaction does)."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[str]] = []
        self.owners: set[str] = set()
        self.fail_on = fail_on

    async def record_attempts(self, owner: str, outcomes: list[Any]) -> set[str]:
        self.owners.add(owner)
        self.batches.append([o.attempt.delivery_id for o in outcomes])
        await trio.sleep(0.05)
        if len(self.batches) == self.fail_on:
            raise RuntimeError("disk full")
        return {o.attempt.delivery_id for o in outcomes}


async def test_attempts_ending_together_share_one_transaction(autojump_clock):
    store = SlowStore()
    done: list[tuple[list[str], set[str] | None]] = []
    recorder = AttemptRecorder(store, "me", lambda batch, ids: done.append(([o.attempt.delivery_id for o in batch], ids)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run)
        recorder.submit(_outcome(0))
        # the first write is under way: past its coalescing wait (not on it: two deadlines at
        # the same instant wake in either order) and inside its 0.05 s
        await trio.sleep(RECORD_COALESCE_SECONDS + 0.01)
        for n in range(1, 10):
            recorder.submit(_outcome(n))  # returns at once
        await trio.sleep(1)
        recorder.submit(_outcome(10))
        recorder.close()
    assert [len(b) for b in store.batches] == [1, 9, 1] and store.owners == {"me"}
    assert [ids for _, ids in done] == [{"dlv_0"}, {f"dlv_{n}" for n in range(1, 10)}, {"dlv_10"}]


async def test_a_failed_transaction_is_reported_and_the_recorder_goes_on(autojump_clock):
    store = SlowStore(fail_on=1)
    done: list[tuple[list[str], set[str] | None]] = []
    recorder = AttemptRecorder(store, "me", lambda batch, ids: done.append(([o.attempt.delivery_id for o in batch], ids)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run)
        recorder.submit(_outcome(0))
        await trio.sleep(1)
        recorder.submit(_outcome(1))
        await trio.sleep(1)
        recorder.close()
    assert done == [(["dlv_0"], None), (["dlv_1"], {"dlv_1"})]


async def test_closing_while_cancelled_still_writes_what_was_queued(autojump_clock):
    store = SlowStore()
    recorder = AttemptRecorder(store, "me", lambda batch, ids: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run)
        await trio.sleep(0.1)
        recorder.submit(_outcome(0))
        recorder.submit(_outcome(1))
        recorder.close()
        nursery.cancel_scope.cancel()  # as when the service stops
    assert store.batches == [["dlv_0", "dlv_1"]]
