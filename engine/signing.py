"""Presigned URLs for the local blob store.

A URL is ``{public_url}/blobs/{key}?part=N&expires=T&length=L&signature=S`` where ``S`` is
HMAC-SHA256, under the server secret, over method, key, part number, expiry and declared
length. Changing any of them, or using the URL after ``T``, fails verification.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from engine.errors import InvalidSignature


@dataclass(frozen=True)
class SignedRequest:
    method: str
    key: str
    part_number: int
    expires: int
    length: int


class Signer:
    def __init__(self, secret: bytes, public_url: str) -> None:
        # A key of its own, so URL signatures never collide with other uses of the secret.
        self._key = hmac.new(secret, b"ipto presigned urls v1", hashlib.sha256).digest()
        self.public_url = public_url.rstrip("/")

    def _mac(self, req: SignedRequest) -> str:
        message = f"{req.method}\n{req.key}\n{req.part_number}\n{req.expires}\n{req.length}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, method: str, key: str, expires_at: datetime, length: int, part_number: int = 0) -> str:
        req = SignedRequest(method, key, part_number, int(expires_at.timestamp()), length)
        query = urlencode({"part": part_number, "expires": req.expires, "length": length, "signature": self._mac(req)})
        return f"{self.public_url}/blobs/{quote(key)}?{query}"

    def verify(self, method: str, key: str, query: dict[str, str], now: datetime | None = None) -> SignedRequest:
        """The signed request, or InvalidSignature (expired, altered or malformed)."""
        try:
            req = SignedRequest(method, key, int(query["part"]), int(query["expires"]), int(query["length"]))
            signature = query["signature"]
        except (KeyError, ValueError):
            raise InvalidSignature("the URL is not a valid presigned URL") from None
        # Compared as bytes: compare_digest refuses str holding non-ASCII (a TypeError, a 500),
        # and the query string may hold any character.
        if not hmac.compare_digest(self._mac(req).encode(), signature.encode("utf-8", "surrogatepass")):
            raise InvalidSignature("the URL signature does not match")
        if (now or datetime.now(UTC)).timestamp() > req.expires:
            raise InvalidSignature("the URL has expired; request a new one")
        return req
