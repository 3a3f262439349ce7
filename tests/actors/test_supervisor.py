"""The supervisor: one actor per dataset, serialised messages, backpressure, restarts, idle stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from structlog.testing import capture_logs

from engine.actors.messages import Message
from engine.actors.supervisor import ActorUnavailable, Supervisor
from engine.config import ActorsConfig
from engine.errors import Conflict
from engine.http.errors import status_for


@dataclass
class Ledger:
    """What the test actors did, in order."""

    events: list[tuple[str, str, str]] = field(default_factory=list)
    active: dict[str, int] = field(default_factory=dict)
    overlap: bool = False


@dataclass(frozen=True)
class Work(Message):
    name: str
    dataset_id: str
    seconds: float = 0.01

    async def apply(self, ctx: Any) -> str:
        ledger: Ledger = ctx
        ledger.active[self.dataset_id] = ledger.active.get(self.dataset_id, 0) + 1
        if ledger.active[self.dataset_id] > 1:
            ledger.overlap = True
        ledger.events.append(("start", self.dataset_id, self.name))
        structlog.get_logger("test").info("working", name=self.name)
        await trio.sleep(self.seconds)
        ledger.events.append(("end", self.dataset_id, self.name))
        ledger.active[self.dataset_id] -= 1
        return self.name


@dataclass(frozen=True)
class Refuse(Message):
    async def apply(self, ctx: Any) -> None:
        raise Conflict("no", {"why": "domain rule"})


@dataclass(frozen=True)
class Crash(Message):
    async def apply(self, ctx: Any) -> None:
        raise RuntimeError("bug in a handler")


def supervisor(**overrides: Any) -> Supervisor:
    cfg = ActorsConfig(**{"inbox_size": 8, "idle_seconds": 60.0, "ask_timeout_seconds": 3600.0,
                          "restart_budget": 2, "restart_backoff_seconds": 0.1, **overrides})
    return Supervisor(cfg, context=Ledger())


async def test_messages_to_one_dataset_are_serialised_in_arrival_order(autojump_clock):
    sup = supervisor()
    results: list[str] = []
    async with sup.running(), trio.open_nursery() as nursery:
        for i in range(10):
            async def ask(i: int = i) -> None:
                results.append(await sup.ask("dset_a", Work(f"m{i}", "dset_a", seconds=0.5)))

            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()  # fixes the arrival order
    ledger: Ledger = sup.context
    assert not ledger.overlap
    assert [name for kind, _, name in ledger.events if kind == "start"] == [f"m{i}" for i in range(10)]
    assert results == [f"m{i}" for i in range(10)]


async def test_different_datasets_run_concurrently(autojump_clock):
    sup = supervisor()
    async with sup.running(), trio.open_nursery() as nursery:
        start = trio.current_time()
        for ds in ("dset_a", "dset_b", "dset_c"):
            nursery.start_soon(sup.ask, ds, Work("x", ds, 10.0))
    assert trio.current_time() - start < 20  # three 10 s messages took 10 s, not 30
    assert sup.actors_started == 3


async def test_concurrent_first_messages_create_one_actor(autojump_clock):
    sup = supervisor()
    async with sup.running(), trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(sup.ask, "dset_new", Work(str(i), "dset_new", 0))
    assert sup.actors_started == 1
    assert not sup.context.overlap


async def test_full_inbox_pushes_back_and_drops_nothing(autojump_clock):
    sup = supervisor(inbox_size=1)
    answered: list[str] = []
    async with sup.running(), trio.open_nursery() as nursery:
        async def ask(name: str) -> None:
            answered.append(await sup.ask("dset_a", Work(name, "dset_a", 100.0)))

        for name in ("busy", "queued", "waiting"):
            nursery.start_soon(ask, name)
            await trio.testing.wait_all_tasks_blocked()
        # one is being worked on, one fills the inbox, the third caller is parked in send()
        assert len(sup.context.events) == 1
    assert answered == ["busy", "queued", "waiting"]


async def test_domain_errors_are_the_answer_and_the_actor_lives_on(autojump_clock):
    sup = supervisor()
    async with sup.running():
        with pytest.raises(Conflict):
            await sup.ask("dset_a", Refuse())
        assert await sup.ask("dset_a", Work("after", "dset_a")) == "after"
    assert sup.actors_started == 1


async def test_crash_restarts_the_actor_and_others_are_unaffected(autojump_clock):
    sup = supervisor()
    async with sup.running(), trio.open_nursery() as nursery:
        nursery.start_soon(sup.ask, "dset_b", Work("long", "dset_b", 5.0))
        with capture_logs() as logs:
            with pytest.raises(ActorUnavailable):
                await sup.ask("dset_a", Crash())
            # the queued and later messages of the crashed dataset are still served
            assert await sup.ask("dset_a", Work("after-crash", "dset_a")) == "after-crash"
        assert any(e["event"] == "actor_crashed" for e in logs)
        assert any(e["event"] == "actor_restarting" for e in logs)
    assert ("end", "dset_b", "long") in sup.context.events


async def test_restart_budget_marks_the_dataset_failed_not_the_service(autojump_clock):
    sup = supervisor(restart_budget=2)
    async with sup.running():
        for _ in range(3):
            with pytest.raises(ActorUnavailable):
                await sup.ask("dset_bad", Crash())
        await trio.sleep(10)
        assert sup.is_failed("dset_bad")
        with pytest.raises(ActorUnavailable, match="failed"):
            await sup.ask("dset_bad", Work("x", "dset_bad"))
        assert await sup.ask("dset_good", Work("fine", "dset_good")) == "fine"


async def test_idle_actor_stops_and_is_recreated_on_demand(autojump_clock):
    sup = supervisor(idle_seconds=300.0)
    async with sup.running():
        await sup.ask("dset_a", Work("first", "dset_a"))
        assert sup.actor_count == 1
        await trio.sleep(299)
        assert sup.actor_count == 1
        await trio.sleep(2)
        assert sup.actor_count == 0
        assert await sup.ask("dset_a", Work("again", "dset_a")) == "again"
        assert sup.actors_started == 2


async def test_ask_times_out_as_unavailable_not_as_an_internal_error(autojump_clock):
    """A caller that waited ``ask_timeout_seconds`` gets ActorUnavailable (503, try again):
    a bare TooSlowError reached the HTTP layer as a 500."""
    sup = supervisor(ask_timeout_seconds=5.0)
    async with sup.running():
        with pytest.raises(ActorUnavailable, match="did not answer in time") as caught:
            await sup.ask("dset_a", Work("slow", "dset_a", 60.0))
        assert status_for(caught.value) == 503


async def test_actor_logs_carry_its_dataset_not_the_callers_request(autojump_clock):
    sup = supervisor()
    structlog.contextvars.bind_contextvars(request_id="req_caller")
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            async with sup.running():
                await sup.ask("dset_a", Work("logged", "dset_a"))
    finally:
        structlog.contextvars.clear_contextvars()
    line = next(e for e in logs if e["event"] == "working")
    assert line["dataset_id"] == "dset_a"
    assert "request_id" not in line


async def test_shutdown_answers_queued_messages(autojump_clock):
    sup = supervisor()
    answers: list[str] = []
    async with trio.open_nursery() as nursery:
        async with sup.running():
            for i in range(3):
                async def ask(i: int = i) -> None:
                    answers.append(await sup.ask("dset_a", Work(str(i), "dset_a", 1.0)))

                nursery.start_soon(ask)
                await trio.testing.wait_all_tasks_blocked()
    assert answers == ["0", "1", "2"]
    with pytest.raises(ActorUnavailable):
        await sup.ask("dset_a", Work("late", "dset_a"))


@dataclass(frozen=True)
class Record(Message):
    """Writes only to the store: the actor answers once committed; the asker waits for the disk."""

    name: str
    flush_by_asker = True

    async def apply(self, ctx: Any) -> str:
        from engine.store.base import is_flush_deferred

        ledger: Ledger = ctx
        ledger.events.append(("apply", "d", f"{self.name} deferred={is_flush_deferred()}"))
        return self.name


async def test_flush_by_asker_lets_the_actor_go_on_while_its_askers_wait_for_the_disk(autojump_clock):
    sup = supervisor()
    disk = trio.Event()
    flushes = 0

    async def flush() -> None:
        nonlocal flushes
        flushes += 1
        await disk.wait()

    sup.flush = flush
    answered: list[str] = []

    async def ask(message: Message) -> None:
        answered.append(await sup.ask("d", message))

    async with sup.running(), trio.open_nursery() as nursery:
        nursery.start_soon(ask, Record("a"))
        nursery.start_soon(ask, Record("b"))
        await trio.testing.wait_all_tasks_blocked()
        # both applied, neither answered: their askers wait for the disk
        assert sorted(e[2] for e in sup.context.events) == ["a deferred=True", "b deferred=True"]
        assert answered == [] and flushes == 2
        nursery.start_soon(ask, Work("w", "d"))  # an ordinary message: applied at once, not deferred
        await trio.sleep(1)
        assert answered == ["w"]
        disk.set()
    assert sorted(answered) == ["a", "b", "w"]
