"""Success and error envelopes, serialised with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response, g

from engine.ids import iso, utcnow


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
