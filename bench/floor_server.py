"""The floor of a small upload on this HTTP stack: the engine's three requests with no engine behind them.

    python -m bench.floor_server --port 8099 [--app asgi|quart] [--work none|durable]
                                 [--processes N] [--dir DIR]

Hypercorn with the engine's knobs (:func:`bench.ceiling.configure`: the same read size,
per-request queue, timeouts, backlog, and the engine's h11 buffer and one-write patches)
in front of an app that answers exactly the flow a small upload's client sends the engine:

* ``POST /v1/datasets/{id}/objects/upload`` — a JSON body in, ``201`` with an envelope
  holding ``object_id`` and a ``upload_url`` on this server;
* ``PUT /blob/{object_id}`` — the body read to its end, then ``200``;
* ``POST /v1/objects/{object_id}/confirm`` — a JSON body in, ``200`` with an envelope.

``--work none`` discards the body. ``--work durable`` does the work no design can avoid:
the declared SHA-256 kept at initiate, the body hashed and written to a file of its own
and fsynced (in one thread job, as the engine does a small body), and confirm answering
only if the hash matches. No auth, no store, no row, no actors, no logging, no metrics.

``--app asgi`` answers from the ASGI scope (as engine/http/hot.py and blob_routes.py do);
``--app quart`` through a Quart-Trio app with the three routes (as the engine's other routes).
``--processes N`` serves one listening socket from N processes (the first binds it and
passes its descriptor to the others, as engine/workers.py does).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import itertools
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import trio

from bench.ceiling import configure, serve_app

_ids = itertools.count()
_declared: dict[str, str] = {}  # object id -> declared SHA-256 (durable)
_stored: dict[str, str] = {}  # object id -> SHA-256 of the bytes on disk (durable)
_prefix = f"{os.getpid()}_"
_checked = False  # durable: confirm checks the declared SHA-256 against the stored bytes'


def _envelope(data: dict[str, Any]) -> bytes:
    return orjson.dumps({"data": data, "request_id": "req_" + _prefix + "0" * 16,
                         "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")})


def _initiate(host: str, body: bytes) -> bytes:
    fields = orjson.loads(body)
    oid = f"obj_{_prefix}{next(_ids):012d}"
    if _checked:
        _declared[oid] = fields["checksum_sha256"]  # the engine requires it too
    return _envelope({"object_id": oid, "upload_url": f"http://{host}/blob/{oid}", "status": "uploading",
                      "filename": fields.get("filename"), "size_bytes": fields.get("size_bytes"),
                      "expires_at": "2026-12-05T00:00:00Z"})


def _confirm(oid: str, body: bytes) -> tuple[int, bytes]:
    orjson.loads(body or b"{}")
    if _checked and _stored.pop(oid, None) != _declared.pop(oid, None):
        return 409, orjson.dumps({"error": {"code": "checksum_mismatch", "message": "", "details": None}})
    return 200, _envelope({"object_id": oid, "status": "uploaded"})


def _store(directory: Path, oid: str, parts: list[bytes]) -> str:
    """Hash, write, fsync: the durable PUT's thread job."""
    digest = hashlib.sha256()
    fd = os.open(directory / oid, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for part in parts:
            digest.update(part)
            os.write(fd, part)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest()


class AsgiApp:
    def __init__(self, durable: Path | None) -> None:
        self.durable = durable

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        parts = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        method, path = scope["method"], scope["path"]
        status, out = 404, b'{"error":{"code":"not_found"}}'
        if method == "PUT" and path.startswith("/blob/"):
            oid = path[6:]
            if self.durable is not None:
                _stored[oid] = await trio.to_thread.run_sync(_store, self.durable, oid, parts)
            status, out = 200, b""
        elif method == "POST" and path.endswith("/objects/upload"):
            host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
            status, out = 201, _initiate(host, b"".join(parts))
        elif method == "POST" and path.endswith("/confirm"):
            status, out = _confirm(path.split("/")[3], b"".join(parts))
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"x-request-id", b"req_floor"),
            (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})


def quart_app(durable: Path | None) -> Any:
    from quart import Response, request
    from quart_trio import QuartTrio

    app = QuartTrio("floor")

    def answer(status: int, out: bytes) -> Response:
        return Response(out, status=status, content_type="application/json")

    async def body() -> bytes:
        data = await request.get_data()
        return data if isinstance(data, bytes) else data.encode()

    @app.post("/v1/datasets/<dataset_id>/objects/upload")
    async def initiate(dataset_id: str) -> Response:
        return answer(201, _initiate(request.host, await body()))

    @app.put("/blob/<oid>")
    async def put(oid: str) -> Response:
        data = await body()
        if durable is not None:
            _stored[oid] = await trio.to_thread.run_sync(_store, durable, oid, [data])
        return answer(200, b"")

    @app.post("/v1/objects/<oid>/confirm")
    async def confirm(oid: str) -> Response:
        return answer(*_confirm(oid, await body()))

    return app


async def serve(app: Any, fd: int) -> None:
    await serve_app(app, f"fd://{fd}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fd", type=int, default=None, help="(internal) serve this inherited listening socket")
    parser.add_argument("--app", choices=("asgi", "quart"), default="asgi")
    parser.add_argument("--work", choices=("none", "durable"), default="none")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where durable PUTs write (required with --work durable)")
    args = parser.parse_args()
    global _checked
    durable = None
    if args.work == "durable":
        _checked = True
        if args.dir is None:
            parser.error("--work durable needs --dir")
        durable = args.dir / str(os.getpid())
        durable.mkdir(parents=True, exist_ok=True)
    children = []
    if args.fd is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(configure("").backlog)
        sock.set_inheritable(True)
        fd = sock.fileno()
        for _ in range(args.processes - 1):
            argv = [sys.executable, "-m", "bench.floor_server", "--fd", str(fd), "--app", args.app, "--work", args.work]
            if args.dir is not None:
                argv += ["--dir", str(args.dir)]
            children.append(subprocess.Popen(argv, pass_fds=[fd], preexec_fn=_die_with_parent))
    else:
        fd = args.fd
    try:
        trio.run(serve, AsgiApp(durable) if args.app == "asgi" else quart_app(durable), os.dup(fd))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(10)


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


if __name__ == "__main__":
    main()
