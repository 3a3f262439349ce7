"""Opaque cursor pagination shared by every list.

A cursor is the ``seq`` (store insertion position) of the last row of the previous page,
base64url-wrapped JSON with a version tag. Lists run newest first (``seq`` descending), so
rows inserted while a client pages through land before its position and never shift or
repeat what it has not read yet.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import orjson

from engine.errors import InvalidRequest

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_SEQ = 2**63 - 1  # the stores' INTEGER / BIGINT: a position past it is no position


class HasSeq(Protocol):
    @property
    def seq(self) -> int: ...


T = TypeVar("T", bound=HasSeq)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None
    has_more: bool


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"v": 1, "s": seq})).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The ``seq`` a cursor carries; a malformed cursor is a 400 naming ``cursor``."""
    if cursor is None or cursor == "":
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        seq = data["s"]
        if data.get("v") != 1 or not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
            raise ValueError
        return seq
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidRequest("cursor is not valid", {"fields": {"cursor": "not a cursor returned by this API"}}) from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}", {"fields": {"limit": f"must be 1 to {MAX_LIMIT}"}})
    return limit


def make_page(rows: Sequence[T], limit: int) -> Page[T]:
    """Build a page from up to ``limit + 1`` fetched rows (the extra one only says "more")."""
    has_more = len(rows) > limit
    items = rows[:limit]
    return Page(items, encode_cursor(items[-1].seq) if has_more and items else None, has_more)


async def page_of(fetch: Callable[[int | None, int], Awaitable[Sequence[T]]], cursor: str | None, limit: int) -> Page[T]:
    """Fetch one page through ``fetch(after_seq, n)``."""
    check_limit(limit)
    rows = await fetch(decode_cursor(cursor), limit + 1)
    return make_page(rows, limit)
