"""Attempts are recorded in batches: one store transaction for every attempt that ended
while the previous one was being written; each caller returns once its own is recorded."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from engine.webhooks.worker import AttemptRecorder


class SlowStore:
    """Records the size of each batch; a write takes a while (as a transaction does)."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.fail_on = fail_on

    async def record_attempts(self, outcomes: list[Any]) -> None:
        self.batches.append(list(outcomes))
        await trio.sleep(0.05)
        if len(self.batches) == self.fail_on:
            raise RuntimeError("disk full")


async def test_attempts_ending_together_share_one_transaction(autojump_clock):
    store = SlowStore()
    recorder = AttemptRecorder(store)
    returned: list[int] = []

    async def one(n: int) -> None:
        await recorder.record(n)  # type: ignore[arg-type]  # the recorder passes outcomes through untouched
        returned.append(n)

    async with trio.open_nursery() as nursery:
        for n in range(10):
            nursery.start_soon(one, n)
    assert [len(b) for b in store.batches] == [1, 9]  # the first to end leads; the nine that came meanwhile go together
    assert sorted(x for b in store.batches for x in b) == list(range(10)) and sorted(returned) == list(range(10))
    await recorder.record(10)  # type: ignore[arg-type]
    assert store.batches[-1] == [10]  # alone: written at once


async def test_a_failed_transaction_fails_exactly_its_own_callers(autojump_clock):
    store = SlowStore(fail_on=2)
    recorder = AttemptRecorder(store)
    outcomes: dict[int, str] = {}

    async def one(n: int) -> None:
        try:
            await recorder.record(n)  # type: ignore[arg-type]
        except RuntimeError as exc:
            outcomes[n] = str(exc)
        else:
            outcomes[n] = "recorded"

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(one, n)
    first, second = store.batches
    assert len(first) == 1 and len(second) == 3
    assert outcomes == {first[0]: "recorded", **{n: "disk full" for n in second}}
    with pytest.raises(RuntimeError):
        store.fail_on = 3
        await recorder.record(4)  # type: ignore[arg-type]
    await recorder.record(5)  # type: ignore[arg-type]  # the recorder goes on after a failure
    assert store.batches[-1] == [5]
