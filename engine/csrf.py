"""CSRF tokens for the console's cookie sessions.

A browser sends a cookie with every request to our origin, whoever made the page that
caused it; a header it only sends when our own script adds it. So a request authenticated
by the session cookie may change state only when it also carries ``X-CSRF-Token``, the
HMAC of its session (the SHA-256 the store keeps) under a key derived from the server
secret: stateless, bound to one session, worthless after logout, and never stored.
Bearer tokens and API keys are not sent by browsers on their own and need no such token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from engine.errors import CsrfRejected


class CsrfTokens:
    def __init__(self, secret: bytes) -> None:
        # A key of its own, so these MACs never collide with other uses of the secret.
        self._key = hmac.new(secret, b"ipto console csrf v1", hashlib.sha256).digest()

    def token(self, session_hash: str) -> str:
        mac = hmac.new(self._key, session_hash.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def require(self, session_hash: str | None, presented: str | None) -> None:
        """Raise CsrfRejected unless ``presented`` is the token of this session."""
        # Compared as bytes: compare_digest refuses str holding non-ASCII (a TypeError, a 500),
        # and a header may hold any Latin-1 character.
        if session_hash is None or not presented or not hmac.compare_digest(
            self.token(session_hash).encode(), presented.strip().encode("utf-8", "surrogatepass")
        ):
            raise CsrfRejected(
                "this request is authenticated by the console's session cookie: send its CSRF token in X-CSRF-Token",
                {"header": "X-CSRF-Token"},
            )
