"""The wrapper every API handler wears: authentication, scope, idempotency.

``@endpoint("datasets:write")`` authenticates the caller (session or API key), checks the
scope, and, on POST with an ``Idempotency-Key``, replays or records the answer. The handler
receives the :class:`~engine.auth.Principal` as its first argument.

Credentials: ``Authorization: Bearer`` or ``X-API-Key``; only when neither is sent, the
review console's session cookie (:data:`SESSION_COOKIE`). A cookie-borne request that
changes state (any method but GET/HEAD/OPTIONS, and the GET routes marked
``changes_state``) must also carry the session's CSRF token (``engine.csrf``), so a
cookie alone never authorizes a change.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio
from quart import Response, current_app, g, request

from engine.auth import Principal
from engine.errors import EngineError, Unauthenticated
from engine.http.errors import engine_error_response
from engine.http.validate import raw_body
from engine.idempotency import Idempotency, fingerprint
from engine.services import Services

SESSION_COOKIE = "ipto_console"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[..., Awaitable[Response]]
# Given a stored (status, body), answer afresh instead of replaying it, or return None.
Refresh = Callable[[int, bytes], Awaitable[Response | None]]


def services() -> Services:
    return current_app.extensions["ipto"]


def _bearer() -> str | None:
    return bearer_token(request.headers.get("Authorization"))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (None without one; 401 if malformed)."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def credentials() -> tuple[str | None, str | None, bool]:
    """``(session token, API key, whether the token came from the console's cookie)``."""
    bearer, api_key = _bearer(), request.headers.get("X-API-Key")
    if bearer is None and not api_key:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return cookie, None, True
    return bearer, api_key, False


async def authenticate(*, changes_state: bool) -> Principal:
    """The caller of this request; a cookie-borne state change must bring its CSRF token."""
    svc = services()
    token, api_key, via_cookie = credentials()
    principal = await svc.identity.authenticate(token, api_key)
    if via_cookie and (changes_state or request.method not in SAFE_METHODS):
        svc.csrf.require(principal.session_hash, request.headers.get(CSRF_HEADER))
    return principal


async def _run_idempotent(
    idem: Idempotency, principal_id: str, key: str, call: Callable[[], Awaitable[Response]], refresh: Refresh | None
) -> Response:
    Idempotency.check_key(key)
    fp = fingerprint(request.method, request.path, await raw_body())
    replay = await idem.begin(principal_id, key, fp)
    if replay is not None:
        if refresh is not None:
            fresh = await refresh(replay.status_code, replay.body)
            if fresh is not None:
                fresh.headers["Idempotent-Replayed"] = "true"
                return fresh
        response = Response(replay.body, status=replay.status_code, content_type="application/json")
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        response = await call()
    except EngineError as exc:
        response = engine_error_response(exc)
    except BaseException:
        with trio.CancelScope(shield=True):
            await idem.release(principal_id, key)
        raise
    with trio.CancelScope(shield=True):  # the work is done: record it even if the client left
        if response.status_code >= 500 or response.status_code == 429:
            await idem.release(principal_id, key)
        else:
            await idem.finish(principal_id, key, response.status_code, await response.get_data(as_text=False))
    return response


def endpoint(
    scope: str | None = None, *, public: bool = False, refresh: Callable[..., Awaitable[Response | None]] | None = None,
    changes_state: bool = False,
) -> Callable[[Handler], Handler]:
    """Wrap a handler; ``public`` ones take no principal (signup, login, health).

    ``refresh(principal, status, body)`` may replace a replay with a fresh answer (an
    upload initiation replayed after its URLs expired gets new URLs for the same object).
    ``changes_state`` marks a GET that changes something (opening a staged object claims it)."""

    def decorate(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(**kwargs: Any) -> Response:
            svc = services()
            principal: Principal | None = None
            if not public:
                principal = await authenticate(changes_state=changes_state)
                g.principal = principal
                structlog.contextvars.bind_contextvars(tenant_id=principal.tenant_id)
                if scope is not None:
                    principal.require(scope)

            async def call() -> Response:
                return await (fn(**kwargs) if principal is None else fn(principal, **kwargs))

            key = request.headers.get("Idempotency-Key")
            if request.method != "POST" or key is None:
                return await call()
            bound = None if refresh is None or principal is None else functools.partial(refresh, principal)
            return await _run_idempotent(svc.idempotency, principal.id if principal else "anonymous", key, call, bound)

        return wrapper

    return decorate
