"""``GET /v1/health``: no auth; 503 when a dependency does not answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
import trio
from quart import Blueprint, Response

from engine import __version__
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import route
from engine.http.schemas import HEALTH

bp = Blueprint("health", __name__)
log = structlog.get_logger(__name__)


async def _check(name: str, probe: Callable[[], Awaitable[None]]) -> str:
    try:
        with trio.fail_after(5):
            await probe()
    except Exception as exc:  # any failure of a dependency is "down", never a 500
        log.warning("health_dependency_down", dependency=name, error=str(exc))
        return "down"
    return "ok"


@route(bp, "GET", "/v1/health", summary="Health", public=True, ok=(200, HEALTH), also_ok={503: HEALTH})
async def health() -> Response:
    """200 when every dependency answers; 503 with the same body (``status: degraded``,
    the one that is ``down`` named) when one does not."""
    svc = services()
    store = await _check("store", svc.store.ping)
    blobs = await _check("blobs", svc.blobs.ping)
    healthy = store == blobs == "ok"
    body = {"status": "ok" if healthy else "degraded", "store": store, "blobs": blobs, "version": __version__}
    return ok(body, 200 if healthy else 503)
