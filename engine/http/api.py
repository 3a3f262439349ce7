"""The wrapper every API handler wears: authentication, scope, idempotency.

``@endpoint("datasets:write")`` authenticates the caller (session or API key), checks the
scope, and, on POST with an ``Idempotency-Key``, replays or records the answer. The handler
receives the :class:`~engine.auth.Principal` as its first argument.
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

Handler = Callable[..., Awaitable[Response]]
# Given a stored (status, body), answer afresh instead of replaying it, or return None.
Refresh = Callable[[int, bytes], Awaitable[Response | None]]


def services() -> Services:
    return current_app.extensions["ipto"]


def _bearer() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


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
    scope: str | None = None, *, public: bool = False, refresh: Callable[..., Awaitable[Response | None]] | None = None
) -> Callable[[Handler], Handler]:
    """Wrap a handler; ``public`` ones take no principal (signup, login, health).

    ``refresh(principal, status, body)`` may replace a replay with a fresh answer (an
    upload initiation replayed after its URLs expired gets new URLs for the same object)."""

    def decorate(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(**kwargs: Any) -> Response:
            svc = services()
            principal: Principal | None = None
            if not public:
                principal = await svc.identity.authenticate(_bearer(), request.headers.get("X-API-Key"))
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
