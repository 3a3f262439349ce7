"""Prefixed opaque identifiers and wall-clock helpers.

IDs look like ``dset_5k2x9q…``: a type prefix and 20 random base32 characters (100 bits),
so they are unguessable and never reveal counts or creation order.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

PREFIXES = frozenset({"tnt", "usr", "dset", "obj", "upl", "blob", "job", "imp", "key", "req", "ses",
                      "grt", "srch", "res", "acc", "led", "dsp", "pay", "wh", "evt", "dlv"})


def new_id(prefix: str) -> str:
    """Return a fresh ``{prefix}_{random}`` identifier."""
    assert prefix in PREFIXES, prefix
    raw = base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()
    return f"{prefix}_{raw[:20]}"


def utcnow() -> datetime:
    """The current UTC instant (the default ``now`` injected into domain code)."""
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a ``Z``, as every API timestamp is written."""
    if ts is None:
        return None
    ts = ts.astimezone(UTC)  # by hand: strftime costs ~10x as much, and its %Y does not pad years below 1000 (RFC 3339 wants four digits)
    return f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}.{ts.microsecond // 1000:03d}Z"
