"""``GET /metrics``: the engine's Prometheus metrics, and the request counting behind them.

Served on the API's own listener when it is a loopback address, or alone on a listener
of its own (``metrics.bind``); off on a public API listener otherwise
(:attr:`engine.config.Config.metrics_where`). No tenant auth: whoever reaches the listener
may read it, so expose it only where operators are.

Requests are counted by *route template* (``/v1/datasets/{dataset_id}``), never by the
path itself, so ids never become label values; requests that match no route count as
``unmatched``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Blueprint, Response, current_app, request

from engine.http.routes import route
from engine.metrics import CONTENT_TYPE, Metrics

bp = Blueprint("metrics", __name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@functools.cache
def route_template(rule: str) -> str:
    """Werkzeug's ``/v1/x/<a>`` or ``<path:a>`` as OpenAPI's ``/v1/x/{a}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def current_route() -> str:
    rule = request.url_rule
    return "unmatched" if rule is None else route_template(rule.rule)


async def render(metrics: Metrics, svc: Any) -> tuple[bytes, str]:
    await metrics.refresh(svc)
    return metrics.render(), CONTENT_TYPE


@route(bp, "GET", "/metrics", summary="Prometheus metrics", wrap=False, ok=(200, {"type": "string"}),
       ok_content_type="text/plain")
async def scrape() -> Response:
    """Prometheus text format; on the API's listener only when it is loopback (``metrics.bind``)."""
    svc = current_app.extensions["ipto"]
    body, content_type = await render(svc.metrics, svc)
    return Response(body, content_type=content_type)


def metrics_asgi(svc: Any) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The separate listener's app (``metrics.bind``): ``GET /metrics`` and nothing else."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, body, content_type = 404, b"not found: this listener serves GET /metrics only\n", "text/plain"
        elif scope["method"] not in ("GET", "HEAD"):
            status, body, content_type = 405, b"method not allowed\n", "text/plain"
        else:
            status = 200
            body, content_type = await render(svc.metrics, svc)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app
