"""Success and error envelopes, serialised with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response, g

from engine.ids import iso, utcnow


def envelope_bytes(payload: dict[str, Any]) -> bytes:
    payload["request_id"] = g.get("request_id")
    payload["timestamp"] = iso(utcnow())
    return orjson.dumps(payload)


def ok(data: Any, status: int = 200) -> Response:
    """The success envelope ``{"data": ..., "request_id", "timestamp"}``."""
    return Response(envelope_bytes({"data": data}), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None) -> Response:
    body = envelope_bytes({"error": {"code": code, "message": message, "details": details}})
    return Response(body, status=status, content_type="application/json")
