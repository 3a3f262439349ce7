"""The client's one error hierarchy.

Every failed API call raises an :class:`ApiError` subclass chosen by the envelope's
``code`` (then by HTTP status), carrying the whole envelope: ``status``, ``code``,
``message``, ``details`` and ``request_id`` (quote it when asking for help). A network
failure that outlived its retries raises :class:`ConnectionFailed`.

::

    IptoError
    ├── ApiError                    any non-2xx answer
    │   ├── InvalidRequest          400 invalid_request
    │   ├── Unauthenticated         401 unauthenticated
    │   ├── Forbidden               403 forbidden (also an expired presigned URL)
    │   ├── NotFound                404 not_found
    │   ├── Conflict                409 conflict
    │   │   └── IdempotencyInProgress   409 idempotency_in_progress
    │   ├── PayloadTooLarge         413 payload_too_large
    │   ├── Unprocessable           422 unprocessable
    │   │   ├── SizeMismatch        422 size_mismatch
    │   │   ├── ChecksumMismatch    422 checksum_mismatch
    │   │   └── IdempotencyKeyReused    422 idempotency_key_reused
    │   ├── RateLimited             429 rate_limited
    │   └── ServerError             5xx
    └── ConnectionFailed            no answer (refused, reset, timed out), after retries
"""

from __future__ import annotations

from typing import Any

import httpx


class IptoError(Exception):
    """Base of everything the client raises on purpose."""


class ApiError(IptoError):
    """The server answered with an error envelope (or a non-2xx without one)."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id

    def __str__(self) -> str:
        rid = f", request_id {self.request_id}" if self.request_id else ""
        return f"{self.message} ({self.code}, HTTP {self.status}{rid})"


class InvalidRequest(ApiError):
    pass


class Unauthenticated(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class IdempotencyInProgress(Conflict):
    pass


class PayloadTooLarge(ApiError):
    pass


class Unprocessable(ApiError):
    pass


class SizeMismatch(Unprocessable):
    pass


class ChecksumMismatch(Unprocessable):
    pass


class IdempotencyKeyReused(Unprocessable):
    pass


class RateLimited(ApiError):
    pass


class ServerError(ApiError):
    pass


class ConnectionFailed(IptoError):
    """No answer from the server (connection refused or dropped, timeout)."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"cannot reach {url}: {cause or type(cause).__name__}")
        self.url = url
        self.cause = cause


_BY_CODE: dict[str, type[ApiError]] = {
    "idempotency_in_progress": IdempotencyInProgress,
    "size_mismatch": SizeMismatch,
    "checksum_mismatch": ChecksumMismatch,
    "idempotency_key_reused": IdempotencyKeyReused,
}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: RateLimited,
}


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed error for a non-2xx response (which must have been read)."""
    status = response.status_code
    request_id = response.headers.get("X-Request-Id") or None
    code, message, details = f"http_{status}", response.reason_phrase or f"HTTP {status}", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code") or code)
        message = str(err.get("message") or message)
        details = err.get("details") if isinstance(err.get("details"), dict) else None
        request_id = body.get("request_id") or request_id
    elif response.text:
        message = f"{message}: {response.text.strip()[:200]}"
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, code, message, details, request_id)
