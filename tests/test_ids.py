"""Ids: ordered ids (webhook events, their deliveries) sort by creation time and keep the
shape and alphabet of random ones; two made at one instant still differ."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from engine.ids import new_id, new_ordered_id, time_prefix


def test_ordered_ids_sort_by_time_and_look_like_random_ones():
    start = datetime(2026, 12, 5, tzinfo=UTC)
    instants = [start + timedelta(milliseconds=ms) for ms in (0, 1, 2, 31, 32, 33, 1023, 1024, 86_400_000, 10**10)]
    ids = [new_ordered_id("evt", t) for t in instants]
    assert ids == sorted(ids)
    assert [time_prefix(t) for t in instants] == sorted(time_prefix(t) for t in instants)
    shape = re.compile(r"evt_[a-z2-7]{20}")
    assert all(shape.fullmatch(i) for i in ids) and shape.fullmatch(new_id("evt"))
    assert len({new_ordered_id("evt", start) for _ in range(1000)}) == 1000  # the random part tells them apart
    assert time_prefix(datetime(1970, 1, 1, tzinfo=UTC)) < time_prefix(datetime(3000, 1, 1, tzinfo=UTC))
