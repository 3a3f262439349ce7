"""API keys: create (secret shown once), list, get, update, revoke. Scope ``keys:write``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from engine.auth import ACCESS_MODES, ALL_SCOPES, Principal
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import PAGE, Body, route
from engine.http.schemas import API_KEY_CREATED, listing, ref
from engine.http.validate import Field
from engine.ids import iso
from engine.store.records import ApiKey

bp = Blueprint("api_keys", __name__)

_NAME = Field(str, min_len=1, max_len=200)
_IDS = Field(list, items=str, max_items=1000)
CREATE = Body("ApiKeyCreate", {
    "name": Field(str, required=True, min_len=1, max_len=200),
    "scopes": Field(list, required=True, items=str, item_choices=ALL_SCOPES, max_items=len(ALL_SCOPES),
                    check=lambda v: None if v else "must name at least one scope", schema={"minItems": 1}),
    "dataset_access_mode": Field(str, choices=ACCESS_MODES),
    "dataset_ids": _IDS,
})
UPDATE = Body("ApiKeyUpdate", {"name": _NAME, "dataset_access_mode": Field(str, choices=ACCESS_MODES), "dataset_ids": _IDS})
KEY = ref("ApiKey")


def key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "api_key_id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "dataset_access_mode": key.dataset_access_mode,
        "dataset_ids": list(key.dataset_ids),
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
    }


@route(bp, "POST", "/v1/api-keys", summary="Create an API key", scope="keys:write", body=CREATE, ok=(201, API_KEY_CREATED),
       errors=(403,))
async def create_key(principal: Principal, body: dict[str, Any]) -> Response:
    """The full key (``key``) is in this answer only."""
    created = await services().identity.create_api_key(
        principal, body["name"], body["scopes"], body.get("dataset_access_mode", "all_available"), body.get("dataset_ids", [])
    )
    return ok({"key": created.plaintext, **key_view(created.key)}, 201)


@route(bp, "GET", "/v1/api-keys", summary="List API keys", scope="keys:write", query=PAGE, ok=(200, listing("api_keys", KEY)))
async def list_keys(principal: Principal, query: dict[str, Any]) -> Response:
    page = await services().identity.list_api_keys(principal, query["cursor"], query["limit"])
    return ok({"api_keys": [key_view(k) for k in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@route(bp, "GET", "/v1/api-keys/<key_id>", summary="Get an API key", scope="keys:write", ok=(200, KEY))
async def get_key(principal: Principal, key_id: str) -> Response:
    return ok(key_view(await services().identity.get_api_key(principal, key_id)))


@route(bp, "PATCH", "/v1/api-keys/<key_id>", summary="Update an API key", scope="keys:write", body=UPDATE, ok=(200, KEY),
       errors=(409,))
async def update_key(principal: Principal, key_id: str, body: dict[str, Any]) -> Response:
    key = await services().identity.update_api_key(
        principal, key_id, body.get("name"), body.get("dataset_access_mode"), body.get("dataset_ids")
    )
    return ok(key_view(key))


@route(bp, "DELETE", "/v1/api-keys/<key_id>", summary="Revoke an API key", scope="keys:write", ok=(200, KEY))
async def revoke_key(principal: Principal, key_id: str) -> Response:
    return ok(key_view(await services().identity.revoke_api_key(principal, key_id)))
