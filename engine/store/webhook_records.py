"""Records of webhooks: endpoints, deliveries and their attempts (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

DELIVERY_STATUSES = ("pending", "succeeded", "failed")


@dataclass(frozen=True)
class Webhook:
    id: str
    tenant_id: str
    url: str
    events: tuple[str, ...]
    description: str | None
    status: str  # enabled | disabled
    disabled_reason: str | None
    secret_sealed: bytes
    previous_secret_sealed: bytes | None
    previous_secret_expires_at: datetime | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime
    seq: int = 0


@dataclass(frozen=True)
class Delivery:
    id: str
    webhook_id: str
    tenant_id: str
    event_id: str
    event_type: str
    status: str  # one of DELIVERY_STATUSES
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_duration_ms: float | None
    created_at: datetime
    seq: int = 0


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    attempt: int
    started_at: datetime
    status_code: int | None
    duration_ms: float
    error: str | None
    response_excerpt: str | None


@dataclass(frozen=True)
class DeliveryJob:
    """A claimed delivery with what sending it needs: the endpoint and the event's bytes."""

    delivery: Delivery
    webhook: Webhook
    body: bytes


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt came to, and what follows from it (decided by the worker)."""

    attempt: Attempt
    succeeded: bool
    next_attempt_at: datetime | None  # None: no further automatic attempt
    disable_reason: str | None  # "gone" (410): disable the endpoint at once
    disable_failing_before: datetime  # an endpoint failing since before this is disabled ("failing")


def event_filter(events: tuple[str, ...] | list[str]) -> str:
    """``',a,b,'``: what the outbox matches ``',' + type + ','`` (or ``',*,'``) against."""
    return "," + ",".join(events) + ","
