"""``GET /v1/health``: no auth; 503 when a dependency does not answer."""

from __future__ import annotations

import structlog
import trio
from quart import Blueprint, Response

from engine import __version__
from engine.http.api import endpoint, services
from engine.http.respond import ok

bp = Blueprint("health", __name__)
log = structlog.get_logger(__name__)


@bp.get("/v1/health")
@endpoint(public=True)
async def health() -> Response:
    store = "ok"
    try:
        with trio.fail_after(5):
            await services().store.ping()
    except Exception as exc:  # any failure of the dependency is "down", never a 500
        log.warning("health_store_down", error=str(exc))
        store = "down"
    body = {"status": "ok" if store == "ok" else "degraded", "store": store, "blobs": "ok", "version": __version__}
    return ok(body, 200 if store == "ok" else 503)
