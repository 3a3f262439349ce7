"""A tenant's webhook endpoints: create (the secret shown once), read, change, delete,
rotate the secret, read the delivery log and retry a delivery. Scope ``keys:write``
(checked by the HTTP layer); another tenant's webhook or delivery is a 404."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from engine.auth import Principal
from engine.config import WebhooksConfig
from engine.errors import Conflict, InvalidRequest, NotFound
from engine.ids import new_id
from engine.pagination import Page, page_of
from engine.store.webhook_events import EVENT_TYPES
from engine.store.webhook_records import Attempt, Delivery, Webhook
from engine.webhooks.keys import Sealer, new_secret
from engine.webhooks.targets import check_for_creation

STATUSES = ("enabled", "disabled")


def check_events(events: Sequence[str]) -> tuple[str, ...]:
    """The subscribed event types: known types, or ``["*"]`` for all."""
    if not events:
        raise InvalidRequest("events must name at least one event type, or be [\"*\"]", {"fields": {"events": "must not be empty"}})
    if "*" in events:
        if len(events) != 1:
            raise InvalidRequest("\"*\" stands alone in events", {"fields": {"events": "\"*\" must be the only item"}})
        return ("*",)
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(f"unknown event types: {', '.join(unknown)}",
                             {"fields": {"events": f"unknown: {', '.join(unknown)}; allowed: {', '.join(EVENT_TYPES)} or *"}})
    return tuple(dict.fromkeys(events))


@dataclass(frozen=True)
class Created:
    webhook: Webhook
    secret: str  # shown this once


@dataclass(frozen=True)
class DeliveryView:
    delivery: Delivery
    attempts: list[Attempt]


class Webhooks:
    def __init__(self, store: Any, sealer: Sealer, cfg: WebhooksConfig, now: Callable[[], datetime],
                 wake: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.sealer = sealer
        self.cfg = cfg
        self.now = now
        self.wake = wake  # the delivery worker's: a retried delivery goes out at once

    async def create(self, principal: Principal, url: str, events: Sequence[str], description: str | None) -> Created:
        kinds = check_events(events)
        await check_for_creation(url, self.cfg.allow_private_targets)
        now = self.now()
        hook_id, secret = new_id("wh"), new_secret()
        hook = Webhook(
            id=hook_id, tenant_id=principal.tenant_id, url=url, events=kinds, description=description, status="enabled",
            disabled_reason=None, secret_sealed=self.sealer.seal(hook_id, secret), previous_secret_sealed=None,
            previous_secret_expires_at=None, failing_since=None, created_at=now, updated_at=now,
        )
        await self.store.create_webhook(hook)
        return Created(hook, secret)

    async def get(self, principal: Principal, webhook_id: str) -> Webhook:
        hook = await self.store.get_webhook(principal.tenant_id, webhook_id)
        if hook is None:
            raise NotFound("no such webhook", {"webhook_id": webhook_id})
        return hook

    async def list(self, principal: Principal, cursor: str | None, limit: int) -> Page[Webhook]:
        return await page_of(lambda after, n: self.store.list_webhooks(principal.tenant_id, after, n), cursor, limit)

    async def update(self, principal: Principal, webhook_id: str, fields: dict[str, Any]) -> Webhook:
        hook = await self.get(principal, webhook_id)
        changes: dict[str, Any] = {}
        if "url" in fields:
            await check_for_creation(fields["url"], self.cfg.allow_private_targets)
            changes["url"] = fields["url"]
        if "events" in fields:
            changes["events"] = check_events(fields["events"])
        if "description" in fields:
            changes["description"] = fields["description"]
        if "status" in fields and fields["status"] != hook.status:
            changes["status"] = fields["status"]
            # Enabling starts a fresh failure streak; disabling by hand says so.
            changes["disabled_reason"] = None if fields["status"] == "enabled" else "manual"
            changes["failing_since"] = None
        if changes:
            changes["updated_at"] = self.now()
        updated = await self.store.update_webhook(principal.tenant_id, webhook_id, changes)
        if updated is None:
            raise NotFound("no such webhook", {"webhook_id": webhook_id})
        if changes.get("status") == "enabled":
            self.wake()
        return updated

    async def delete(self, principal: Principal, webhook_id: str) -> Webhook:
        hook = await self.get(principal, webhook_id)
        if not await self.store.delete_webhook(principal.tenant_id, webhook_id):
            raise NotFound("no such webhook", {"webhook_id": webhook_id})
        return hook

    async def rotate(self, principal: Principal, webhook_id: str) -> Created:
        """A new secret; the current one keeps signing beside it for ``secret_overlap_seconds``."""
        hook = await self.get(principal, webhook_id)
        now, secret = self.now(), new_secret()
        changes = {
            "secret_sealed": self.sealer.seal(hook.id, secret),
            "previous_secret_sealed": hook.secret_sealed,
            "previous_secret_expires_at": now + timedelta(seconds=self.cfg.secret_overlap_seconds),
            "updated_at": now,
        }
        updated = await self.store.update_webhook(principal.tenant_id, webhook_id, changes)
        if updated is None:
            raise NotFound("no such webhook", {"webhook_id": webhook_id})
        return Created(updated, secret)

    async def deliveries(self, principal: Principal, webhook_id: str, cursor: str | None, limit: int) -> Page[DeliveryView]:
        await self.get(principal, webhook_id)
        page = await page_of(lambda after, n: self.store.list_deliveries(principal.tenant_id, webhook_id, after, n), cursor, limit)
        attempts = await self.store.delivery_attempts([d.id for d in page.items])
        return replace(page, items=[DeliveryView(d, attempts.get(d.id, [])) for d in page.items])  # type: ignore[arg-type]

    async def retry(self, principal: Principal, webhook_id: str, delivery_id: str) -> DeliveryView:
        hook = await self.get(principal, webhook_id)
        if await self.store.get_delivery(principal.tenant_id, webhook_id, delivery_id) is None:
            raise NotFound("no such delivery", {"delivery_id": delivery_id})
        if hook.status != "enabled":
            raise Conflict("the webhook is disabled: enable it (PATCH status) before retrying", {"status": hook.status})
        delivery = await self.store.retry_delivery(principal.tenant_id, webhook_id, delivery_id, self.now())
        if delivery is None:
            raise NotFound("no such delivery", {"delivery_id": delivery_id})
        self.wake()
        attempts = await self.store.delivery_attempts([delivery.id])
        return DeliveryView(delivery, attempts[delivery.id])


def is_status(value: str) -> str | None:
    return None if value in STATUSES else f"must be one of {', '.join(STATUSES)}"
