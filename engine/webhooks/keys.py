"""Webhook secrets: made, sealed at rest, and used to sign (Standard Webhooks).

A secret is ``whsec_`` + base64 of 24 random bytes, shown once. The engine must sign with
it, so it cannot be hashed: it is sealed with AES-GCM under a key derived from the server
secret, with the webhook's id as associated data (a sealed secret copied onto another
webhook does not open).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "whsec_"
SECRET_BYTES = 24


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    """The key bytes a ``whsec_`` secret stands for (what HMAC is keyed with)."""
    return base64.b64decode(secret.removeprefix(PREFIX))


class Sealer:
    """Seals and opens webhook secrets under a key derived from the server secret."""

    def __init__(self, server_secret: bytes) -> None:
        self._aead = AESGCM(hmac.new(server_secret, b"ipto webhook secrets v1", hashlib.sha256).digest())

    def seal(self, webhook_id: str, secret: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, secret.encode(), webhook_id.encode())

    def open(self, webhook_id: str, sealed: bytes) -> str:
        return self._aead.decrypt(sealed[:12], sealed[12:], webhook_id.encode()).decode()


def signature_header(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: space-separated ``v1,<base64 HMAC-SHA256 of
    "id.timestamp.body">``, one per live secret (the new one and, after a rotation, the
    old), keyed with the secrets' bytes (:func:`secret_bytes`, kept by the worker so a
    secret is opened and decoded once, not at every attempt)."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys)
