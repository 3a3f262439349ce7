"""Idempotency keys (Stripe semantics, API.md "Conventions").

The first answer to ``(principal, Idempotency-Key)`` is kept for ``retention_seconds`` and
replayed; the same key with another method, path or body is refused (422); a request that
arrives while the first is still running is refused (409). A claim still "in progress"
after ``in_progress_timeout_seconds`` belongs to a request that died with its process and
is taken over.

Kept responses can carry secrets (a session token, an API key shown once), and secrets are
never stored in clear: each response is sealed with AES-GCM under a key derived from the
server secret *and* the idempotency key, which the server does not keep in clear either.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.config import IdempotencyConfig
from engine.errors import IdempotencyInProgress, IdempotencyKeyReused, InvalidRequest
from engine.ids import utcnow
from engine.store.base import Store

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: bytes


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path and body (JSON compared canonically)."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body.strip() else b""
    except orjson.JSONDecodeError:
        canonical = body
    return hashlib.sha256(b"\0".join([method.encode(), path.encode(), canonical])).hexdigest()


class Idempotency:
    def __init__(self, store: Store, cfg: IdempotencyConfig, secret: bytes, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.cfg = cfg
        self.secret = secret
        self.now = now

    @staticmethod
    def check_key(key: str) -> str:
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidRequest(
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
                {"fields": {"Idempotency-Key": "invalid header value"}},
            )
        return key

    def _aead(self, principal: str, key: str) -> tuple[AESGCM, bytes]:
        ad = f"{principal}\0{key}".encode()
        return AESGCM(hmac.new(self.secret, ad, hashlib.sha256).digest()), ad

    def _seal(self, principal: str, key: str, body: bytes) -> bytes:
        aead, ad = self._aead(principal, key)
        nonce = os.urandom(12)
        return nonce + aead.encrypt(nonce, body, ad)

    def _open(self, principal: str, key: str, sealed: bytes) -> bytes:
        aead, ad = self._aead(principal, key)
        return aead.decrypt(sealed[:12], sealed[12:], ad)

    @staticmethod
    def _stored_key(key: str) -> str:
        # The key is half of the response's encryption key, so only its hash is stored.
        return hashlib.sha256(key.encode()).hexdigest()

    async def begin(self, principal: str, key: str, fp: str) -> Replay | None:
        """Claim the key (None: go ahead and run the request) or return the stored answer."""
        now = self.now()
        record = await self.store.idempotency_begin(
            principal,
            self._stored_key(key),
            fp,
            now,
            now + timedelta(seconds=self.cfg.retention_seconds),
            now - timedelta(seconds=self.cfg.in_progress_timeout_seconds),
        )
        if record is None:
            return None
        if record.fingerprint != fp:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request", {"header": "Idempotency-Key"}
            )
        if record.state != "done" or record.response is None or record.status_code is None:
            raise IdempotencyInProgress("a request with this Idempotency-Key is still in progress; retry shortly")
        return Replay(record.status_code, self._open(principal, key, record.response))

    async def finish(self, principal: str, key: str, status_code: int, body: bytes) -> None:
        await self.store.idempotency_finish(principal, self._stored_key(key), status_code, self._seal(principal, key, body))

    async def release(self, principal: str, key: str) -> None:
        await self.store.idempotency_release(principal, self._stored_key(key))

    async def purge(self) -> int:
        return await self.store.purge_idempotency(self.now())
