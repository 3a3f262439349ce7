"""A dataset's actor between two engine processes on one PostgreSQL, under a steady load:
two supervisors with their own ``Leases`` (owners "a" and "b") stand for two processes.

Found with ``python -m bench upload`` (small files, ``--store postgres --workers 2``): the
holder handed the dataset over only once its inbox was empty, which a steadily loaded
holder's never is, so the other process's requests waited ``actors.ask_timeout_seconds``
and were answered 500."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio
import trio_asyncio

from engine.actors.leases import Leases
from engine.actors.messages import Message
from engine.actors.supervisor import Supervisor
from engine.config import ActorsConfig
from engine.store.postgres.store import PgStore
from tests.conftest import backend_overrides

BUSY_LIMIT = 3000  # messages process "a" sends at most while "b" waits (the old code served "b" only after them all)


@dataclass(frozen=True)
class Note(Message):
    who: str

    async def apply(self, ctx: Any) -> str:
        ctx.append(self.who)
        await trio.sleep(0.002)  # a store write's worth of time
        return self.who


def _supervisor(leases: Leases, applied: list[str]) -> Supervisor:
    cfg = ActorsConfig(inbox_size=64, idle_seconds=60.0, ask_timeout_seconds=120.0)
    return Supervisor(cfg, context=applied, leases=leases)


async def test_a_busy_holder_hands_the_dataset_over_without_emptying_its_inbox():
    url = backend_overrides()["store.url"]
    async with trio_asyncio.open_loop(), PgStore.open(url) as store, trio.open_nursery() as nursery:
        a, b = Leases(store, 15.0, owner="a"), Leases(store, 15.0, owner="b")
        await nursery.start(a.run)
        await nursery.start(b.run)
        applied: list[str] = []
        sup_a, sup_b = _supervisor(a, applied), _supervisor(b, applied)
        async with sup_a.running(), sup_b.running():
            assert await sup_a.ask("dset_busy", Note("a")) == "a"  # "a" holds the dataset's lease
            b_answered = trio.Event()
            sent_by_a = 0

            async def keep_a_busy() -> None:
                nonlocal sent_by_a
                while not b_answered.is_set() and sent_by_a < BUSY_LIMIT:
                    sent_by_a += 1
                    assert await sup_a.ask("dset_busy", Note("a")) == "a"

            with trio.fail_after(60):
                async with trio.open_nursery() as busy:
                    for _ in range(8):  # eight askers keep a's inbox from ever emptying
                        busy.start_soon(keep_a_busy)
                    await trio.sleep(0.05)
                    assert await sup_b.ask("dset_busy", Note("b")) == "b"
                    b_answered.set()
                    sent_at_b = sent_by_a
            # "b" was served during a's steady load, not after it ...
            assert sent_at_b < BUSY_LIMIT
            # ... and nothing "a" had queued meanwhile was lost: "a" got the lease back for it.
            assert applied.count("a") == sent_by_a + 1
            assert applied.count("b") == 1
        nursery.cancel_scope.cancel()
