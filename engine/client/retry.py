"""When a call is tried again, and how long to wait first (exponential backoff, jitter).

A call is retried only when doing it twice cannot do the work twice: GET/HEAD/PUT/DELETE,
and POST because the client sends an ``Idempotency-Key`` that the server replays. A
connection that could not even be opened is retried for every method (nothing was sent).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A POST whose first try is still running on the server (it was cut off on our side).
RETRY_CODES = frozenset({"idempotency_in_progress"})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` is the total number of tries (1 = no retry)."""

    attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 10.0
    jitter: float = 0.25  # up to ±25 % of each delay

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        base = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        if retry_after is not None:
            base = min(max(base, retry_after), self.max_backoff_seconds * 6)
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


NO_RETRY = RetryPolicy(attempts=1)


def retryable_exception(method: str, exc: httpx.TransportError) -> bool:
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return True  # the request never left
    return method.upper() in IDEMPOTENT_METHODS


def retryable_response(method: str, response: httpx.Response, code: str | None) -> bool:
    if method.upper() not in IDEMPOTENT_METHODS:
        return False
    return response.status_code in RETRY_STATUSES or (response.status_code == 409 and code in RETRY_CODES)


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta or HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
