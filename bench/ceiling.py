"""The control plane's ceiling: the engine's own HTTP stack answering trivial JSON routes.

    python -m bench.ceiling --port 8099

Hypercorn (``hypercorn.trio.serve``, the same knobs as ``engine/service.py``: no access or
error log, the same read size, per-request queue, graceful and read timeouts, listen backlog,
h11 receive buffer) in front of a bare Quart-Trio app with two routes and nothing else: no auth, no store, no
actors, no logging. Whatever the engine does per request costs on top of this, so a
control-plane figure divided by this one is the share of the stack's ceiling it reaches.

* ``GET /v1/ping`` -> ``{"data": {"ok": true}, ...}`` (ceiling for ``GET /v1/objects/{id}``)
* ``POST /v1/echo`` reads a JSON body and answers 201 with it (ceiling for initiate/confirm)
"""

from __future__ import annotations

import argparse
import signal
from datetime import UTC, datetime
from typing import Any

import hypercorn.trio
import hypercorn.trio.tcp_server
import trio
from hypercorn.config import Config as HypercornConfig
from quart import request
from quart_trio import QuartTrio


def _engine_knobs() -> tuple[int, int, float, int]:
    """(socket read bytes, app queue messages, graceful timeout, listen backlog) as the engine sets them."""
    try:
        from engine import service
        from engine.config import load_config

        http = load_config(None, overrides={}).http
        return service.SOCKET_READ_BYTES, service.APP_QUEUE_MESSAGES, http.graceful_timeout_seconds, http.backlog
    except Exception:  # the engine moved a knob: fall back to the values it had when this was written
        return 512 * 1024, 2, 10.0, 1024


def create_app() -> QuartTrio:
    app = QuartTrio("ceiling")

    def _envelope(data: object) -> dict[str, object]:
        return {"data": data, "request_id": "req_ceiling", "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}

    @app.get("/v1/ping")
    async def ping() -> dict[str, object]:
        return _envelope({"ok": True})

    @app.post("/v1/echo")
    async def echo() -> tuple[dict[str, object], int]:
        return _envelope(await request.get_json()), 201

    return app


def configure(bind: str) -> HypercornConfig:
    """Hypercorn as the engine configures it (engine/service.py ``_hypercorn_config``), bound to ``bind``."""
    read_bytes, queue, graceful, backlog = _engine_knobs()
    hc = HypercornConfig()
    hc.bind = [bind]
    hc.accesslog = None
    hc.errorlog = None
    hc.graceful_timeout = graceful
    hc.backlog = backlog
    hc.read_timeout = None
    hc.max_app_queue_size = queue
    hypercorn.trio.tcp_server.MAX_RECV = read_bytes
    try:  # h11's buffer without body copies and a small answer in one write, as the engine installs them
        from engine.http import h11_buffer, one_write

        h11_buffer.install()
        one_write.install()
    except ImportError:
        pass
    return hc


async def serve(host: str, port: int) -> None:
    await serve_app(create_app(), f"{host}:{port}")


async def serve_app(app: Any, bind: str) -> None:
    """Serve ``app`` on ``bind`` (``host:port`` or ``fd://N``) with the engine's knobs until SIGINT/SIGTERM."""
    hc = configure(bind)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:

        async def signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                async for _ in received:
                    stop.set()
                    return

        nursery.start_soon(signals)
        await hypercorn.trio.serve(app, hc, shutdown_trigger=stop.wait, mode="asgi")
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    trio.run(serve, args.host, args.port)


if __name__ == "__main__":
    main()
