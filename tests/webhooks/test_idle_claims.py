"""An idle delivery worker that finds a delivery due since its last claim's instant (written
while that claim queued for the store) claims again at once instead of sleeping a whole poll;
a due time the last claim already saw (a busy endpoint, another process's lease) waits for it."""

from __future__ import annotations

from datetime import timedelta

import trio

from engine.config import WebhooksConfig
from engine.ids import utcnow
from engine.webhooks.keys import Sealer
from engine.webhooks.owner import new_owner
from engine.webhooks.sender import SendResult
from engine.webhooks.worker import DeliveryWorker


async def test_a_delivery_due_since_the_last_claim_is_claimed_without_waiting_for_the_poll():
    """A claim runs some milliseconds after its ``now`` (it queues for the store's write lock):
    an event written meanwhile is due when the worker, idle, next reads the due time. It claims
    again at once instead of sleeping a whole poll (60 s here); a due time the last claim
    already saw waits for the poll."""
    claims: list[object] = []

    class Store:
        async def release_delivery_leases(self, now, is_dead) -> int:
            return 0

        async def claim_deliveries(self, owner, now, lease_until, limit, per_webhook, busy):
            claims.append(now)
            await trio.sleep(0.01)  # queued for the store: the clock moves on meanwhile
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
