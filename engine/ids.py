"""Prefixed opaque identifiers and wall-clock helpers.

IDs look like ``dset_5k2x9q…``: a type prefix and 20 random base32 characters (100 bits),
so they are unguessable and never reveal counts or creation order.

The exception, :func:`new_ordered_id`: a webhook event's id starts with its creation time
(which its body states anyway), so the outbox's rows go in at the end of their unique
index. Random keys put each of a thousand events a second on a random page of the
index, and a batch of them rewrote most of the index into the SQLite WAL at every commit
(bench/README.md, "Webhook fan-out").
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

PREFIXES = frozenset({"tnt", "usr", "dset", "obj", "upl", "blob", "job", "imp", "key", "req", "ses",
                      "grt", "srch", "res", "acc", "led", "dsp", "pay", "wh", "evt", "dlv"})


# Each random byte's low five bits as a base32 character (RFC 4648's alphabet, lower case;
# 256 is a multiple of 32, so every character is equally likely): an id is one C call,
# not base64.b32encode's pure-Python loop (9 us, several times per request).
_BASE32 = bytes(b"abcdefghijklmnopqrstuvwxyz234567"[i % 32] for i in range(256))


def new_id(prefix: str) -> str:
    """Return a fresh ``{prefix}_{random}`` identifier."""
    assert prefix in PREFIXES, prefix
    return f"{prefix}_{secrets.token_bytes(20).translate(_BASE32).decode('ascii')}"


# Sorted as the characters sort (ASCII), so that ids sort by their time prefix.
_SORTED32 = "234567abcdefghijklmnopqrstuvwxyz"
_TIME_CHARS = 9  # 45 bits of milliseconds since 1970: to the year 3084


def time_prefix(now: datetime) -> str:
    """``now`` in milliseconds as :data:`_TIME_CHARS` base32 characters that sort as the instants do."""
    ms = int(now.timestamp() * 1000)
    return "".join(_SORTED32[(ms >> shift) & 31] for shift in range(5 * (_TIME_CHARS - 1), -1, -5))


def new_ordered_id(prefix: str, now: datetime) -> str:
    """``{prefix}_{time}{random}``: 20 characters as :func:`new_id`'s, the first 9 the creation
    time (ids made later sort after), the other 11 random (55 bits: unguessable, no count)."""
    assert prefix in PREFIXES, prefix
    return f"{prefix}_{time_prefix(now)}{secrets.token_bytes(20 - _TIME_CHARS).translate(_BASE32).decode('ascii')}"


def utcnow() -> datetime:
    """The current UTC instant (the default ``now`` injected into domain code)."""
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a ``Z``, as every API timestamp is written."""
    if ts is None:
        return None
    ts = ts.astimezone(UTC)  # by hand: strftime costs ~10x as much, and its %Y does not pad years below 1000 (RFC 3339 wants four digits)
    return f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}.{ts.microsecond // 1000:03d}Z"
