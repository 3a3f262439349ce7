"""The hottest JSON routes answered as plain ASGI, not through Quart: the two routes of every
upload (initiate and confirm) and ``POST /v1/search``.

A small upload is three requests: initiate, the presigned PUT (plain ASGI already, see
:mod:`engine.http.blob_routes`) and confirm. Through Quart-Trio each of the two JSON
requests pays for a request context, its task and cancel scope, Werkzeug's routing and
header objects, and the before/after hooks — about as much of the event loop's CPU as
the store's work for the request (bench/README.md, "Where a small upload's server CPU
goes"); a lexical search is a millisecond of index work, so the same fixed cost is most of
its answer's time (bench/README.md, "Search"). Here they are answered from the ASGI scope
directly, with the same parts and in the same order as :func:`engine.http.routes.route`
and :func:`engine.http.api.endpoint`: the caller authenticated (Bearer or X-API-Key), the
declared scope required, the JSON body validated against the route's declared
:class:`~engine.http.routes.Body`, the domain call (its cursors sealed and bound to the
list and the caller's tenant as Quart's ``before_request`` binds them), the success or
error envelope with ``X-Request-Id``, the access log line and the request counted under
the route's template for ``/metrics``.

Only the plain case takes this path: a POST with a Content-Length within
``http.max_json_bytes``, credentials in a header, no query string and no
``Idempotency-Key``. Everything else — an idempotent retry, the console's cookie (and its
CSRF token), no credentials, a chunked or oversized body, query parameters (which a
cursor is bound to) — goes to Quart unchanged, where the routes stay declared (the
OpenAPI document is built from those declarations, and they give this path its scope and
body spec).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
import trio
from werkzeug.exceptions import RequestTimeout

from engine.auth import Principal
from engine.errors import EngineError
from engine.http import objects, search
from engine.http.api import bearer_token
from engine.http.errors import shown
from engine.http.metrics import route_template
from engine.http.respond import begin_request, end_request, envelope, error_body, send_json
from engine.http.routes import RouteSpec
from engine.http.validate import parse_json_body
from engine.pagination import bind_cursors
from engine.services import Services

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# (services, caller, the path's one parameter or "" for a route without one, validated body)
Handler = Callable[[Services, Principal, str, dict[str, Any]], Awaitable[Any]]

log = structlog.get_logger("engine.http.errors")

BODY_TIMEOUT_SECONDS = 60.0  # Quart's BODY_TIMEOUT, which the same requests get on its path


@dataclass(frozen=True)
class HotRoute:
    pattern: re.Pattern[str]
    spec: RouteSpec
    label: str  # the /metrics route label, as Quart's requests count it
    handler: Handler


def _hot(view: Any, handler: Handler) -> HotRoute:
    spec: RouteSpec = view.api_spec
    assert spec.method == "POST" and spec.body is not None and spec.scope is not None and not spec.public
    # the app's default converter (engine.http.app.Segment): one non-empty path segment without NUL
    pattern = re.compile("^" + re.sub(r"<[^<>]+>", "([^/\x00]+)", spec.path) + "$")
    return HotRoute(pattern, spec, route_template(spec.path), handler)


async def _search(svc: Services, principal: Principal, _: str, body: dict[str, Any]) -> Any:
    return await search.search_data(svc, principal, body)


ROUTES = (
    _hot(objects.initiate, objects.initiate_data),
    _hot(objects.confirm, objects.confirm_data),
    _hot(search.search, _search),
)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name; the first of repeated ones (as Werkzeug's ``get``)."""
    out: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        out.setdefault(name.lower(), value)
    return out


def _mimetype(content_type: bytes | None) -> str:
    return "" if content_type is None else content_type.decode("latin-1").split(";")[0].strip().lower()


class HotRoutes:
    """Wraps the app: the plain initiate and confirm requests here, everything else to ``app``."""

    def __init__(self, svc: Services, app: ASGIApp) -> None:
        self.svc = svc
        self.app = app
        self.max_body = svc.cfg.http.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/v1/"):
            for hot in ROUTES:
                m = hot.pattern.match(scope["path"])
                if m is not None:
                    headers = _headers(scope)
                    if self._plain(headers) and not scope.get("query_string"):
                        await self._serve(hot, m.group(1) if m.re.groups else "", scope["path"], headers, receive, send)
                        return
                    break
        await self.app(scope, receive, send)

    def _plain(self, headers: dict[bytes, bytes]) -> bool:
        length = headers.get(b"content-length")
        return (
            b"idempotency-key" not in headers
            and (bool(headers.get(b"authorization")) or bool(headers.get(b"x-api-key")))
            and length is not None
            and length.isdigit()
            and int(length) <= self.max_body
            and b"transfer-encoding" not in headers
        )

    async def _serve(
        self, hot: HotRoute, param: str, path: str, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        request_id, started = begin_request()
        status = 500
        try:
            status, body = await self._answer(hot, param, path, headers, receive, request_id)
        except EngineError as exc:
            status, code, message, details = shown(exc, request_id)
            if status >= 500:
                log.error("engine_error", error=exc.message, error_type=type(exc).__name__)
            body = error_body(code, message, details, request_id)
        except _Disconnected:
            status = 499
            return
        except _TimedOut:
            status = 408
            body = error_body("invalid_request", RequestTimeout.description, None, request_id)
        except Exception as exc:
            log.exception("unhandled_error", error_type=type(exc).__name__)
            body = error_body("internal", f"internal error; quote request id {request_id}", None, request_id)
        finally:
            end_request(self.svc.metrics, "POST", path, hot.label, status, started)
        await send_json(send, status, body, request_id)

    async def _answer(
        self, hot: HotRoute, param: str, path: str, headers: dict[bytes, bytes], receive: Receive, request_id: str
    ) -> tuple[int, bytes]:
        spec = hot.spec
        authorization, api_key = headers.get(b"authorization"), headers.get(b"x-api-key")
        principal = await self.svc.identity.authenticate(
            bearer_token(authorization.decode("latin-1")) if authorization is not None else None,
            api_key.decode("latin-1") if api_key else None,
        )
        structlog.contextvars.bind_contextvars(tenant_id=principal.tenant_id)
        assert spec.scope is not None and spec.body is not None
        principal.require(spec.scope)
        # what engine.http.app._list_identity binds a cursor to, for a request without query parameters
        binding = orjson.dumps(["POST", path, [], principal.tenant_id])
        bind_cursors(self.svc.cursors, lambda: binding)
        data = await _read_body(receive)
        fields = parse_json_body(data, _mimetype(headers.get(b"content-type")), spec.body.fields, allow_empty=spec.body.optional)
        result = await hot.handler(self.svc, principal, param, fields)
        return spec.ok_status, envelope({"data": result}, request_id)


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    with trio.move_on_after(BODY_TIMEOUT_SECONDS) as timeout:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(parts)
    assert timeout.cancelled_caught
    raise _TimedOut


class _TimedOut(Exception):
    """The body did not arrive in time: 408, as Quart answers it."""
