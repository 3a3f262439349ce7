"""Webhook endpoints, their secrets and delivery log: ``/v1/webhooks`` (scope ``keys:write``)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from engine.auth import Principal
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import PAGE, Body, route
from engine.http.schemas import WEBHOOK_DELETED, WEBHOOK_WITH_SECRET, listing, ref
from engine.http.validate import Field
from engine.ids import iso
from engine.store.webhook_records import Attempt, Webhook
from engine.webhooks.endpoints import STATUSES, DeliveryView

bp = Blueprint("webhooks", __name__)
WEBHOOK, DELIVERY = ref("Webhook"), ref("WebhookDelivery")

_URL = Field(str, min_len=1, max_len=2048)
_EVENTS = Field(list, items=str, max_items=50)
_DESCRIPTION = Field(str, nullable=True, max_len=500)
CREATE = Body("WebhookCreate", {"url": Field(str, required=True, min_len=1, max_len=2048), "events": Field(list, required=True, items=str, max_items=50),
          "description": _DESCRIPTION})
UPDATE = Body("WebhookUpdate", {"url": _URL, "events": _EVENTS, "description": _DESCRIPTION, "status": Field(str, choices=STATUSES)})


def webhook_view(hook: Webhook) -> dict[str, Any]:
    return {
        "webhook_id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "description": hook.description,
        "status": hook.status,
        "disabled_reason": hook.disabled_reason,
        "failing_since": iso(hook.failing_since),
        "previous_secret_expires_at": iso(hook.previous_secret_expires_at),
        "created_at": iso(hook.created_at),
        "updated_at": iso(hook.updated_at),
    }


def _attempt_view(a: Attempt) -> dict[str, Any]:
    return {"attempt": a.attempt, "started_at": iso(a.started_at), "status_code": a.status_code,
            "duration_ms": a.duration_ms, "error": a.error, "response_excerpt": a.response_excerpt}


def delivery_view(view: DeliveryView) -> dict[str, Any]:
    d = view.delivery
    return {
        "delivery_id": d.id,
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempt_count": d.attempts,
        "next_attempt_at": iso(d.next_attempt_at),
        "last_attempt_at": iso(d.last_attempt_at),
        "last_status_code": d.last_status_code,
        "last_duration_ms": d.last_duration_ms,
        "last_error": d.last_error,
        "created_at": iso(d.created_at),
        "attempts": [_attempt_view(a) for a in view.attempts],
    }


@route(bp, "POST", "/v1/webhooks", summary="Create a webhook", scope="keys:write", body=CREATE, ok=(201, WEBHOOK_WITH_SECRET))
async def create_webhook(principal: Principal, body: dict[str, Any]) -> Response:
    created = await services().webhooks.create(principal, body["url"], body["events"], body.get("description"))
    return ok({**webhook_view(created.webhook), "secret": created.secret}, 201)


@route(bp, "GET", "/v1/webhooks", summary="List webhooks", scope="keys:write", query=PAGE, ok=(200, listing("webhooks", WEBHOOK)))
async def list_webhooks(principal: Principal, query: dict[str, Any]) -> Response:
    page = await services().webhooks.list(principal, query["cursor"], query["limit"])
    return ok({"webhooks": [webhook_view(h) for h in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@route(bp, "GET", "/v1/webhooks/<webhook_id>", summary="Get a webhook", scope="keys:write", ok=(200, WEBHOOK))
async def get_webhook(principal: Principal, webhook_id: str) -> Response:
    return ok(webhook_view(await services().webhooks.get(principal, webhook_id)))


@route(bp, "PATCH", "/v1/webhooks/<webhook_id>", summary="Update a webhook", scope="keys:write", body=UPDATE, ok=(200, WEBHOOK))
async def update_webhook(principal: Principal, webhook_id: str, body: dict[str, Any]) -> Response:
    return ok(webhook_view(await services().webhooks.update(principal, webhook_id, body)))


@route(bp, "DELETE", "/v1/webhooks/<webhook_id>", summary="Delete a webhook", scope="keys:write", ok=(200, WEBHOOK_DELETED))
async def delete_webhook(principal: Principal, webhook_id: str) -> Response:
    await services().webhooks.delete(principal, webhook_id)
    return ok({"webhook_id": webhook_id, "deleted": True})


@route(bp, "POST", "/v1/webhooks/<webhook_id>/rotate-secret", summary="Rotate a webhook's secret", scope="keys:write", ok=(200, WEBHOOK_WITH_SECRET))
async def rotate_secret(principal: Principal, webhook_id: str) -> Response:
    created = await services().webhooks.rotate(principal, webhook_id)
    return ok({**webhook_view(created.webhook), "secret": created.secret})


@route(bp, "GET", "/v1/webhooks/<webhook_id>/deliveries", summary="List a webhook's deliveries", scope="keys:write", query=PAGE, ok=(200, listing("deliveries", DELIVERY)))
async def list_deliveries(principal: Principal, webhook_id: str, query: dict[str, Any]) -> Response:
    page = await services().webhooks.deliveries(principal, webhook_id, query["cursor"], query["limit"])
    return ok({"deliveries": [delivery_view(v) for v in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@route(bp, "POST", "/v1/webhooks/<webhook_id>/deliveries/<delivery_id>/retry", summary="Retry a delivery", scope="keys:write", errors=(409,), ok=(202, DELIVERY))
async def retry_delivery(principal: Principal, webhook_id: str, delivery_id: str) -> Response:
    return ok(delivery_view(await services().webhooks.retry(principal, webhook_id, delivery_id)), 202)
