"""The Quart-Trio application factory: blueprints, request ids, access log, errors."""

from __future__ import annotations

import orjson
import structlog
import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.routing import BaseConverter

from engine.http import (
    access,
    activity,
    admin_datasets,
    api_keys,
    bulk,
    console,
    datasets,
    disputes,
    grants,
    health,
    identity,
    imports,
    metrics,
    objects,
    openapi,
    provider,
    review,
    search,
    webhooks,
)
from engine.http.errors import install_error_handlers
from engine.ids import new_id
from engine.pagination import bind_cursors
from engine.services import Services

access_log = structlog.get_logger("engine.access")


class Segment(BaseConverter):
    """A path parameter (``<dataset_id>``): one non-empty segment without NUL. No id holds
    NUL and PostgreSQL cannot even compare text holding it (``GET /v1/objects/obj_%00`` was a
    500 there), so such a path matches no route: 404, as on SQLite. The one parameter that
    keeps NUL, to drop it, is an import's file name (``<string:filename>``)."""

    regex = "[^/\x00]+"


def create_app(svc: Services) -> QuartTrio:
    """Build the app around explicit dependencies (no globals)."""
    app = QuartTrio("engine")
    app.url_map.converters["default"] = Segment  # before any rule is added
    app.extensions["ipto"] = svc
    app.config["MAX_CONTENT_LENGTH"] = svc.cfg.http.max_json_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    for module in (health, identity, api_keys, datasets, admin_datasets, objects, review, imports, console, grants, search, access,
                   activity, disputes, provider, webhooks):
        app.register_blueprint(module.bp)
    app.register_blueprint(bulk.bp)  # after objects': its routes sit beside the single ones
    app.register_blueprint(openapi.bp)
    if svc.cfg.metrics_where == "main" and svc.metrics is not None:
        app.register_blueprint(metrics.bp)
    install_error_handlers(app)
    observe = svc.metrics.observe_request if svc.metrics is not None else None

    @app.before_request
    async def _start() -> None:
        g.request_id = new_id("req")
        g.started = trio.current_time()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)
        bind_cursors(svc.cursors, _list_identity)

    @app.after_request
    async def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        seconds = trio.current_time() - g.get("started", trio.current_time())
        access_log.info("request", method=request.method, path=request.path, status=response.status_code,
                        duration_ms=round(seconds * 1000, 2))
        if observe is not None:
            observe(request.method, metrics.current_route(), response.status_code, seconds)
        return response

    return app


def _list_identity() -> bytes:
    """What a cursor of this request is bound to: the list (method and path), its filters
    (every query parameter but ``cursor`` and ``limit``; empty ones are absent) and the
    caller's tenant. A cursor opened under any other is refused (engine/pagination.py)."""
    filters = sorted((k, v) for k, v in request.args.items(multi=True) if k not in ("cursor", "limit") and v != "")
    principal = g.get("principal")
    return orjson.dumps([request.method, request.path, filters, principal.tenant_id if principal is not None else None])
