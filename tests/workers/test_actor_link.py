"""The actor link: a worker's messages applied by the primary's supervisor, answers sent back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import trio

from engine.actors.remote import ActorLink, LostPrimary, serve_link
from engine.errors import ChecksumMismatch


@dataclass(frozen=True)
class Add:
    value: int


class FakeSupervisor:
    """Applies ``Add`` per dataset in order, as a dataset's actor would; records what it saw."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.seen: list[tuple[str, Any, float]] = []

    async def ask(self, dataset_id: str, message: Any, timeout: float) -> Any:
        self.seen.append((dataset_id, message, timeout))
        if message.value < 0:
            raise ChecksumMismatch("bad sum", {"expected_sha256": "aa", "computed_sha256": "bb"})
        await trio.sleep(0)
        self.totals[dataset_id] = self.totals.get(dataset_id, 0) + message.value
        return self.totals[dataset_id]


async def _pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def test_forwarded_messages_reach_the_supervisor_and_answers_come_back() -> None:
    ours, theirs = await _pair()
    supervisor = FakeSupervisor()
    link = ActorLink(ours)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_link, theirs, supervisor)
        await nursery.start(link.run)
        results: list[int] = []

        async def one(value: int) -> None:
            results.append(await link.ask("dset_a", Add(value), 7.0))

        async with trio.open_nursery() as askers:
            for value in range(1, 51):
                askers.start_soon(one, value)
        assert supervisor.totals == {"dset_a": sum(range(1, 51))}
        assert sorted(results)[-1] == sum(range(1, 51)) and len(set(results)) == 50  # each its own answer
        assert {(d, t) for d, _, t in supervisor.seen} == {("dset_a", 7.0)}
        nursery.cancel_scope.cancel()


async def test_a_domain_error_crosses_the_link_with_its_class_and_details() -> None:
    ours, theirs = await _pair()
    link = ActorLink(ours)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_link, theirs, FakeSupervisor())
        await nursery.start(link.run)
        with pytest.raises(ChecksumMismatch) as caught:
            await link.ask("dset_a", Add(-1), 5.0)
        assert caught.value.message == "bad sum"
        assert caught.value.details == {"expected_sha256": "aa", "computed_sha256": "bb"}
        assert await link.ask("dset_a", Add(2), 5.0) == 2  # the link goes on after an error
        nursery.cancel_scope.cancel()


async def test_waiters_get_lost_primary_when_the_primary_goes_and_later_asks_fail_at_once() -> None:
    ours, theirs = await _pair()
    link = ActorLink(ours)

    class Stuck(FakeSupervisor):
        async def ask(self, dataset_id: str, message: Any, timeout: float) -> Any:
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        async with trio.open_nursery() as primary:
            primary.start_soon(serve_link, theirs, Stuck())
            outcome: list[BaseException] = []

            async def asker() -> None:
                try:
                    await link.ask("dset_a", Add(1), 30.0)
                except LostPrimary as exc:
                    outcome.append(exc)

            nursery.start_soon(asker)
            await trio.sleep(0.05)
            primary.cancel_scope.cancel()
        await theirs.aclose()  # the primary's end closes, as when its process dies
        with trio.fail_after(5):
            while not outcome:
                await trio.sleep(0.01)
        with pytest.raises(LostPrimary):
            await link.ask("dset_a", Add(1), 5.0)
        nursery.cancel_scope.cancel()
