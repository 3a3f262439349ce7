"""Prefixed opaque identifiers and wall-clock helpers.

IDs look like ``dset_5k2x9q…``: a type prefix and 20 random base32 characters (100 bits),
so they are unguessable and never reveal counts or creation order.
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


def utcnow() -> datetime:
    """The current UTC instant (the default ``now`` injected into domain code)."""
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a ``Z``, as every API timestamp is written."""
    if ts is None:
        return None
    ts = ts.astimezone(UTC)  # by hand: strftime costs ~10x as much, and its %Y does not pad years below 1000 (RFC 3339 wants four digits)
    return f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}.{ts.microsecond // 1000:03d}Z"
