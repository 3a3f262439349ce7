"""Signup, login, logout and ``GET /v1/me``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from engine.auth import Principal
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import Body, route
from engine.http.schemas import LOGGED_OUT, ME, SESSION_GRANT
from engine.http.validate import Field
from engine.identity import SessionGrant
from engine.ids import iso
from engine.store.records import Tenant, User

bp = Blueprint("identity", __name__)

SIGNUP = Body("Signup", {
    "email": Field(str, required=True, max_len=254, schema={"format": "email", "examples": ["ann@example.com"]}),
    "password": Field(str, required=True, max_len=1024, schema={"minLength": 8},
                      check=lambda v: None if len(v) >= 8 else "must be 8 to 1024 characters"),
    "name": Field(str, nullable=True, max_len=200),
    "tenant_name": Field(str, nullable=True, min_len=1, max_len=200),
})
LOGIN = Body("Login", {"email": Field(str, required=True, max_len=254), "password": Field(str, required=True, max_len=1024)})
EMPTY = Body("Empty", optional=True, description="no fields: send {} or nothing")


def user_view(user: User) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "email": user.email,
        "name": user.name,
        "is_platform_admin": user.is_platform_admin,
        "created_at": iso(user.created_at),
    }


def tenant_view(tenant: Tenant) -> dict[str, Any]:
    return {"tenant_id": tenant.id, "name": tenant.name, "created_at": iso(tenant.created_at)}


def _grant_view(grant: SessionGrant) -> dict[str, Any]:
    return {
        "token": grant.token,
        "expires_at": iso(grant.expires_at),
        "user": user_view(grant.user),
        "tenant": tenant_view(grant.tenant),
    }


@route(bp, "POST", "/v1/auth/signup", summary="Sign up", public=True, body=SIGNUP, ok=(201, SESSION_GRANT), errors=(409,))
async def signup(body: dict[str, Any]) -> Response:
    """Creates the tenant, its owner and a session."""
    grant = await services().identity.signup(body["email"], body["password"], body.get("name"), body.get("tenant_name"))
    return ok(_grant_view(grant), 201)


@route(bp, "POST", "/v1/auth/login", summary="Log in", public=True, body=LOGIN, ok=(200, SESSION_GRANT))
async def login(body: dict[str, Any]) -> Response:
    return ok(_grant_view(await services().identity.login(body["email"], body["password"])))


@route(bp, "POST", "/v1/auth/logout", summary="Log out", body=EMPTY, ok=(200, LOGGED_OUT))
async def logout(principal: Principal, body: dict[str, Any]) -> Response:
    """Ends the session: its token stops working at once."""
    await services().identity.logout(principal)
    return ok({"logged_out": True})


@route(bp, "GET", "/v1/me", summary="Who am I", ok=(200, ME))
async def me(principal: Principal) -> Response:
    store = services().store
    user = await store.get_user(principal.user_id)
    tenant = await store.get_tenant(principal.tenant_id)
    assert user is not None and tenant is not None
    return ok(
        {
            "user": user_view(user),
            "tenant": tenant_view(tenant),
            "roles": list(principal.roles),
            "scopes": sorted(principal.scopes),
            "auth": {"kind": principal.kind, "api_key_id": principal.api_key_id},
        }
    )
