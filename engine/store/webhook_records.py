"""Records of webhooks: endpoints, deliveries and their attempts (frozen dataclasses)."""

from __future__ import annotations

from collections.abc import Sequence
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


@dataclass
class EndpointStep:
    """What a run of one endpoint's consecutive outcomes (all succeeded, or all failed) does
    to the endpoint: the same as applying them one by one, in fewer statements."""

    webhook_id: str
    succeeded: bool
    failed_at: datetime  # the run's first failure: its failure streak starts here unless it had started
    last_at: datetime  # the run's last attempt
    failing_before: datetime  # the last outcome's: failing since before this disables it
    disable_reason: str | None = None  # the first "disable at once" of the run (410: "gone")
    disabled_at: datetime | None = None


def endpoint_steps(kept: Sequence[tuple[AttemptOutcome, str, int]]) -> list[EndpointStep]:
    """``kept``: outcomes in the order they are recorded, each with its delivery's endpoint.
    Per endpoint, its consecutive successes make one step and its consecutive failures one."""
    steps: list[EndpointStep] = []
    last: dict[str, EndpointStep] = {}
    for outcome, webhook_id, _ in kept:
        a = outcome.attempt
        step = last.get(webhook_id)
        if step is None or step.succeeded != outcome.succeeded:
            step = last[webhook_id] = EndpointStep(webhook_id, outcome.succeeded, a.started_at, a.started_at,
                                                   outcome.disable_failing_before)
            steps.append(step)
        step.last_at = a.started_at
        step.failing_before = outcome.disable_failing_before
        if outcome.disable_reason is not None and step.disable_reason is None:
            step.disable_reason, step.disabled_at = outcome.disable_reason, a.started_at
    return steps
