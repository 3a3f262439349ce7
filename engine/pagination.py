"""Opaque cursor pagination shared by every list.

A cursor carries the ``seq`` (store insertion position) of the last row of the previous
page. Lists run newest first (``seq`` descending), so rows inserted while a client pages
through land before its position and never shift or repeat what it has not read yet.

Handed to clients, a cursor is *sealed*: AES-GCM under a key derived from the server
secret, with the list it belongs to as associated data (the HTTP layer binds method, path,
filters and tenant for each request, :func:`bind_cursors`). A client can neither read the
position inside (a global row number would tell how many rows the platform holds) nor
forge one, nor carry one to another list, filter or tenant: each is a 400 naming
``cursor``. Lists with cursors of their own content (search) seal them the same way
(:func:`seal_cursor`, :func:`open_cursor`). Outside a bound request (domain code called
directly, tests of it) cursors are plain, unsealed JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import InvalidRequest

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_SEQ = 2**63 - 1  # the stores' INTEGER / BIGINT: a position past it is no position
MAX_CURSOR_CHARS = 1024
_NONCE = 12


class HasSeq(Protocol):
    @property
    def seq(self) -> int: ...


T = TypeVar("T", bound=HasSeq)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None
    has_more: bool


def _bad_cursor(reason: str = "not a cursor returned by this API for this list") -> InvalidRequest:
    return InvalidRequest("cursor is not valid", {"fields": {"cursor": reason}})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(token: str) -> bytes:
    if len(token) > MAX_CURSOR_CHARS:
        raise _bad_cursor()
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, binascii.Error):
        raise _bad_cursor() from None


class CursorSeal:
    """Seals cursor contents under a key of its own, derived from the server secret."""

    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(hmac.new(secret, b"ipto cursors v1", hashlib.sha256).digest())

    def seal(self, payload: bytes, binding: bytes) -> str:
        nonce = os.urandom(_NONCE)
        return _b64(nonce + self._aead.encrypt(nonce, payload, binding))

    def open(self, token: str, binding: bytes) -> bytes:
        """The payload; a 400 if ``token`` was not sealed here for ``binding``."""
        raw = _unb64(token)
        try:
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], binding)
        except (InvalidTag, ValueError):
            raise _bad_cursor() from None


@dataclass(frozen=True)
class _Bound:
    seal: CursorSeal
    binding: Callable[[], bytes]  # the current list's identity, read when a cursor is made or opened


_bound: ContextVar[_Bound | None] = ContextVar("ipto_cursor_binding", default=None)


def bind_cursors(seal: CursorSeal, binding: Callable[[], bytes]) -> None:
    """Seal and open every cursor of the current request (task) with ``seal``, bound to
    what ``binding()`` returns then (the list: method, path, filters, tenant)."""
    _bound.set(_Bound(seal, binding))


def seal_cursor(payload: bytes) -> str:
    """A cursor for ``payload``: sealed and bound in a bound request, else plain base64url."""
    bound = _bound.get()
    return _b64(payload) if bound is None else bound.seal.seal(payload, bound.binding())


def open_cursor(cursor: str) -> bytes:
    """The payload of a cursor made by :func:`seal_cursor` for this list; a 400 otherwise."""
    bound = _bound.get()
    return _unb64(cursor) if bound is None else bound.seal.open(cursor, bound.binding())


def encode_cursor(seq: int) -> str:
    return seal_cursor(orjson.dumps({"v": 1, "s": seq}))


def decode_cursor(cursor: str | None) -> int | None:
    """The ``seq`` a cursor carries; a malformed, altered or foreign cursor is a 400 naming ``cursor``."""
    if cursor is None or cursor == "":
        return None
    try:
        data = orjson.loads(open_cursor(cursor))
        seq = data["s"]
        if data.get("v") != 1 or not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
            raise ValueError
        return seq
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise _bad_cursor() from None


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
