"""Review lifecycle with durable deadlines, under autojump_clock (72 hours in milliseconds)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio

from engine.actors.review_clock import ReviewClock
from engine.errors import Conflict
from tests.actors.conftest import START, admin, open_engine, staged_object, tenant, trio_wall_clock

WINDOW = 72 * 3600


async def _dataset(svc, owner):
    return (await svc.datasets.create(owner, {"name": "reviewed"})).id


async def test_unreviewed_object_expires_after_72_hours_and_is_purged(tmp_path, autojump_clock):
    async with open_engine(tmp_path / "d") as svc:
        owner = await tenant(svc)
        ds = await _dataset(svc, owner)
        obj = await staged_object(svc, owner, ds)
        assert obj.review_state == "staged" and await svc.blobs.exists(obj.blob_id)
        assert (await svc.datasets.get(owner, ds)).object_count == 1

        await trio.sleep(WINDOW - 1)
        assert (await svc.objects.get(owner, obj.id)).review_state == "staged"
        await trio.sleep(2)
        expired = await svc.objects.get(owner, obj.id)
        assert expired.review_state == "expired"
        assert not await svc.blobs.exists(obj.blob_id)
        counts = await svc.datasets.get(owner, ds)
        assert counts.object_count == 0 and counts.total_bytes == 0
        with pytest.raises(Conflict) as err:
            await svc.review.approve(admin(), obj.id)
        assert err.value.details["review_state"] == "expired"
        with pytest.raises(Conflict):
            await svc.objects.confirm(owner, obj.id, None)


async def test_each_object_expires_at_its_own_deadline(tmp_path, autojump_clock):
    async with open_engine(tmp_path / "d") as svc:
        owner = await tenant(svc)
        ds = await _dataset(svc, owner)
        first = await staged_object(svc, owner, ds)
        await trio.sleep(3600)
        second = await staged_object(svc, owner, ds)
        await trio.sleep(WINDOW - 3600 + 1)
        assert (await svc.objects.get(owner, first.id)).review_state == "expired"
        assert (await svc.objects.get(owner, second.id)).review_state == "staged"
        await trio.sleep(3600)
        assert (await svc.objects.get(owner, second.id)).review_state == "expired"


async def test_claimed_object_waits_for_its_reviewer(tmp_path, autojump_clock):
    async with open_engine(tmp_path / "d") as svc:
        owner = await tenant(svc)
        ds = await _dataset(svc, owner)
        obj = await staged_object(svc, owner, ds)
        opened = await svc.review.open(admin(), obj.id)
        assert opened.review_state == "under_review"
        await trio.sleep(WINDOW + 10)
        assert (await svc.objects.get(owner, obj.id)).review_state == "under_review"
        rejected = await svc.review.reject(admin(), obj.id, "not ours")
        assert rejected.review_state == "rejected" and rejected.review_reason == "not ours"


async def test_overdue_objects_expire_on_the_first_pass_after_a_restart(tmp_path, autojump_clock):
    async with open_engine(tmp_path / "d") as svc:
        owner = await tenant(svc)
        ds = await _dataset(svc, owner)
        obj = await staged_object(svc, owner, ds)
    # the service was down for four days
    async with open_engine(tmp_path / "d", start=START + timedelta(days=4)) as svc:
        await trio.sleep(0.1)
        assert (await svc.objects.get(owner, obj.id)).review_state == "expired"
        assert not await svc.blobs.exists(obj.blob_id)


async def test_rejected_objects_are_purged_and_never_processed(tmp_path, autojump_clock):
    async with open_engine(tmp_path / "d") as svc:
        owner = await tenant(svc)
        ds = await _dataset(svc, owner)
        obj = await staged_object(svc, owner, ds)
        rejected = await svc.review.reject(admin(), obj.id, None)
        assert rejected.review_state == "rejected"
        assert not await svc.blobs.exists(obj.blob_id)
        assert (await svc.datasets.get(owner, ds)).object_count == 0
        with pytest.raises(Conflict) as err:
            await svc.review.approve(admin(), obj.id)
        assert err.value.details["review_state"] == "rejected"
        assert rejected.latest_job_id is None
        assert await svc.store.unfinished_jobs("pipeline") == []


async def test_review_decisions_are_idempotent(tmp_path, autojump_clock):
    async with open_engine(tmp_path / "d") as svc:
        owner = await tenant(svc)
        ds = await _dataset(svc, owner)
        obj = await staged_object(svc, owner, ds)
        other = await staged_object(svc, owner, ds)
        await svc.review.reject(admin(), other.id, "x")
        assert (await svc.review.reject(admin(), other.id, "x")).review_state == "rejected"
        await svc.review.claim(admin(), obj.id)
        assert (await svc.review.claim(admin(), obj.id)).review_state == "under_review"


class _Deadlines:
    """The two queries the review clock makes, counting its passes over the store; a
    deadline that has passed is gone (as if its objects had expired)."""

    def __init__(self) -> None:
        self.deadline = None
        self.reads = 0

    async def datasets_with_due_reviews(self, now):
        await trio.lowlevel.checkpoint()
        if self.deadline is not None and self.deadline <= now:
            self.deadline = None
        return []

    async def next_review_deadline(self):
        self.reads += 1
        return self.deadline


async def test_a_wake_up_re_reads_the_store_only_for_an_earlier_deadline(autojump_clock):
    store = _Deadlines()
    now = trio_wall_clock()
    clock = ReviewClock(store, actors=None, now=now)
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        await trio.sleep(1)
        assert store.reads == 1  # nothing staged: asleep with no deadline

        store.deadline = now() + timedelta(hours=10)
        clock.wake(store.deadline)  # any deadline is earlier than none
        await trio.sleep(1)
        assert store.reads == 2

        clock.wake(now() + timedelta(hours=20))  # later: the clock wakes before it anyway
        clock.wake(store.deadline)
        await trio.sleep(1)
        assert store.reads == 2

        store.deadline = now() + timedelta(hours=5)
        clock.wake(store.deadline)  # earlier
        await trio.sleep(1)
        assert store.reads == 3

        clock.wake()  # no deadline named: always re-read
        await trio.sleep(1)
        assert store.reads == 4

        await trio.sleep(5 * 3600)  # its own deadline: a pass, then asleep with none
        assert store.reads == 5 and store.deadline is None
        nursery.cancel_scope.cancel()


async def test_confirmations_do_not_send_the_clock_back_to_the_store(tmp_path, autojump_clock):
    async with open_engine(tmp_path / "d") as svc:
        owner = await tenant(svc)
        ds = await _dataset(svc, owner)
        await trio.sleep(1)  # the clock's first pass: nothing staged
        reads = 0
        read = svc.store.next_review_deadline

        async def counted():
            nonlocal reads
            reads += 1
            return await read()

        svc.store.next_review_deadline = counted
        first = await staged_object(svc, owner, ds)
        await trio.sleep(1)
        assert reads == 1  # the first deadline woke the clock from its sleep with none
        later = [await staged_object(svc, owner, ds, filename=f"{i}.txt") for i in range(5)]
        await trio.sleep(1)
        assert reads == 1  # theirs are later: the clock wakes for the first one anyway

        await trio.sleep(WINDOW)
        assert (await svc.objects.get(owner, first.id)).review_state == "expired"
        for obj in later:
            assert (await svc.objects.get(owner, obj.id)).review_state == "expired"
