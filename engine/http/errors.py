"""Every error becomes the API's error envelope here, and only here.

Domain errors map to a status through their class's MRO (the first class found in
:data:`STATUS` wins), so a new subclass inherits its parent's status. Werkzeug's routing
errors (unknown route, wrong method, body too large) get the same envelope; anything
unexpected is logged with its traceback and answered 500 ``internal`` without details.
"""

from __future__ import annotations

from typing import Any

import structlog
from quart import Quart, Response, g
from werkzeug.exceptions import HTTPException

from engine import errors as e
from engine.http.respond import error_response

log = structlog.get_logger(__name__)

STATUS: dict[type[e.EngineError], int] = {
    e.InvalidRequest: 400,
    e.Unauthenticated: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.MethodNotAllowed: 405,
    e.UniqueViolation: 409,
    e.Conflict: 409,
    e.PayloadTooLarge: 413,
    e.Unprocessable: 422,
    e.RateLimited: 429,
    e.ServiceUnavailable: 503,
    e.EngineError: 500,
}

_HTTP_CODES = {
    400: ("invalid_request", "the request is malformed"),
    404: ("not_found", "no such route"),
    405: ("method_not_allowed", "this method is not allowed on this route"),
    413: ("payload_too_large", "the request body is too large"),
    415: ("invalid_request", "unsupported content type"),
}


def status_for(exc: e.EngineError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def shown(exc: e.EngineError, request_id: str | None) -> tuple[int, str, str, dict[str, Any] | None]:
    """``(status, code, message, details)`` a client is shown for ``exc``. A 500's own message
    is a driver's text (``postgresql error: CharacterNotInRepertoireError: …``: the SQL's
    complaint, the value it refused): it goes to the log only, the client gets the request id.
    A 503 says what is unavailable on purpose and keeps its message."""
    status = status_for(exc)
    if status >= 500 and status != STATUS[e.ServiceUnavailable]:
        return status, "internal", f"internal error; quote request id {request_id}", None
    if isinstance(exc, e.UniqueViolation):  # untranslated by its caller: the driver's text names the constraint
        return status, exc.code, "the request conflicts with a record that already exists", None
    return status, exc.code, exc.message, exc.details


def engine_error_response(exc: e.EngineError) -> Response:
    status, code, message, details = shown(exc, g.get("request_id"))
    if status >= 500:
        log.error("engine_error", error=exc.message, error_type=type(exc).__name__)
    elif message != exc.message:
        log.info("engine_error", error=exc.message, error_type=type(exc).__name__, status=status)
    return error_response(status, code, message, details)


def install_error_handlers(app: Quart) -> None:
    @app.errorhandler(e.EngineError)
    async def _engine(exc: e.EngineError) -> Response:
        return engine_error_response(exc)

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code, message = _HTTP_CODES.get(status, ("internal" if status >= 500 else "invalid_request", exc.description or ""))
        response = error_response(status, code, message, None)
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled_error", error_type=type(exc).__name__)
        details: dict[str, Any] | None = None
        return error_response(500, "internal", f"internal error; quote request id {g.get('request_id')}", details)
