"""Success and error envelopes, serialised with orjson."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
import trio
from quart import Response, g

from engine.ids import iso, new_id, utcnow
from engine.metrics import MetricsSink

access_log = structlog.get_logger("engine.access")


def envelope(payload: dict[str, Any], request_id: str | None) -> bytes:
    """Add ``request_id`` and ``timestamp`` to a ``data`` or ``error`` payload; serialise."""
    payload["request_id"] = request_id
    payload["timestamp"] = iso(utcnow())
    return orjson.dumps(payload)


def error_body(code: str, message: str, details: dict[str, Any] | None, request_id: str | None) -> bytes:
    return envelope({"error": {"code": code, "message": message, "details": details}}, request_id)


def envelope_bytes(payload: dict[str, Any]) -> bytes:
    return envelope(payload, g.get("request_id"))


def ok(data: Any, status: int = 200) -> Response:
    """The success envelope ``{"data": ..., "request_id", "timestamp"}``."""
    return Response(envelope_bytes({"data": data}), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None) -> Response:
    return Response(error_body(code, message, details, g.get("request_id")), status=status, content_type="application/json")


# -- plain-ASGI routes (engine/http/blob_routes.py, engine/http/hot.py) -------------------
def begin_request() -> tuple[str, float]:
    """A plain-ASGI request's id (bound to its log lines, as Quart's requests bind theirs) and start time."""
    request_id = new_id("req")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id, trio.current_time()


def end_request(metrics: MetricsSink | None, method: str, path: str, route: str, status: int, started: float) -> None:
    """The access log line and the ``/metrics`` count of a plain-ASGI request, as Quart's requests get them."""
    seconds = trio.current_time() - started
    access_log.info("request", method=method, path=path, status=status, duration_ms=round(seconds * 1000, 2))
    if metrics is not None:
        metrics.observe_request(method, route, status, seconds)


async def send_json(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, body: bytes, request_id: str,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON answer (an envelope's bytes) on a plain-ASGI route."""
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode()),
                    (b"content-length", str(len(body)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})
