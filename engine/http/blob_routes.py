"""The local blob store's presigned URLs, served as plain ASGI (not through Quart).

Quart buffers request bodies without backpressure; here every ``receive()`` is awaited
only when the previous bytes are written, and Hypercorn stops reading the socket while its
small per-request queue is full. So memory per upload stays at a few MiB whatever the
file size. ``PUT /blobs/uploads/{upload_id}?part=…`` receives bytes;
``GET /blobs/objects/{blob_id}?…`` streams them back to the owner. With S3 blobs the
presigned URLs point at S3 and these routes are not mounted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import structlog
import trio

from engine.errors import EngineError, InvalidSignature, MethodNotAllowed, NotFound
from engine.http import direct_body
from engine.http.errors import shown
from engine.http.respond import begin_request, end_request, envelope, error_body, send_json
from engine.services import Services
from engine.store.blobs.local import LocalBlobStore, PartWriter

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = structlog.get_logger(__name__)

# What the hash/disk thread is handed at a time; the server reads sockets in the same size
# (engine/service.py), so one read is one batch and goes on uncopied.
BATCH_BYTES = 512 * 1024
READ_CHUNK = 1024 * 1024


class ClientDisconnected(Exception):
    pass


class RequestBody:
    """The request body in batches of about BATCH_BYTES, each copied once (joined; a batch of
    one message is not copied at all): the loop's time goes to receiving, not to copying.

    On a connection that can hand bodies over (:mod:`engine.http.direct_body`), it is also
    a :class:`~engine.store.blobs.local.DirectBody`: while :meth:`direct_to` offers a writer, the
    connection's reader may have the writer read the rest of the body from the socket
    itself. Then every message goes on as it comes (never held back to fill a batch), so
    the writer has taken everything h11 parsed when the reader looks."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._connection = direct_body.current()

    @contextlib.contextmanager
    def direct_to(self, writer: PartWriter) -> Iterator[None]:
        conn = self._connection
        if conn is None:
            yield
            return
        conn.offer(writer)
        try:
            yield
        finally:
            conn.offer(None)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[bytes]:
        conn = self._connection
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if conn is not None and conn.sink is not None:
                if chunk:
                    yield chunk
                conn.moved()  # the writer took it: a hand-over may be waiting for that
            else:
                if chunk:
                    parts.append(chunk)
                    size += len(chunk)
                if size >= BATCH_BYTES or (not more and size):
                    yield b"".join(parts)
                    parts, size = [], 0
            if not more:
                return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return None


def _route(path: str) -> str:
    """The metrics label of a blob URL: its kind, never its key."""
    kind = path[len("/blobs/"):].partition("/")[0]
    return f"/blobs/{kind}/{{key}}" if kind in ("uploads", "objects", "imports") else "/blobs/unmatched"


class BlobRoutes:
    def __init__(self, svc: Services, blobs: LocalBlobStore) -> None:
        self.svc = svc
        self.blobs = blobs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id, started = begin_request()
        status = 500
        try:
            status = await self._dispatch(scope, receive, send, request_id)
        except ClientDisconnected:
            status = 499
            log.info("blob_client_disconnected", path=scope["path"])
        except EngineError as exc:
            status, code, message, details = shown(exc, request_id)
            if status >= 500:
                log.error("engine_error", error=exc.message, error_type=type(exc).__name__)
            body = error_body(code, message, details, request_id)
            await send_json(send, status, body, request_id)  # an unread body: engine/http/body_guard.py
        except Exception:
            log.exception("blob_route_failed")
            body = error_body("internal", f"internal error; quote request id {request_id}", None, request_id)
            await send_json(send, 500, body, request_id)  # a write failed (disk full...): the body may still be arriving
        finally:
            end_request(self.svc.metrics, scope["method"], scope["path"], _route(scope["path"]), status, started)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> int:
        path = unquote(scope["path"])
        key = path[len("/blobs/"):]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        method = scope["method"]
        if key.startswith("uploads/") and method == "PUT":
            return await self._put(scope, receive, send, request_id, key, query)
        if key.startswith("imports/") and method == "PUT":
            return await self._put_import(scope, receive, send, request_id, key, query)
        if key.startswith("objects/") and method in ("GET", "HEAD"):
            return await self._get(send, request_id, key, query, head=method == "HEAD")
        if key.startswith(("uploads/", "objects/", "imports/")):
            raise MethodNotAllowed("this URL takes PUT (uploads) or GET (downloads)")
        raise NotFound("no such blob URL")

    async def _put(self, scope: Scope, receive: Receive, send: Send, request_id: str, key: str, query: dict[str, str]) -> int:
        signed = self.svc.signer.verify("PUT", key, query)
        upload_id = key[len("uploads/"):]
        part = await self.svc.objects.receive_part(upload_id, signed.part_number, signed.length, _content_length(scope), RequestBody(receive))
        payload = envelope(
            {"data": {"upload_id": upload_id, "part_number": part.part_number, "size_bytes": part.size_bytes, "etag": part.etag}},
            request_id,
        )
        await send_json(send, 200, payload, request_id, [(b"etag", part.etag.encode())])
        return 200

    async def _put_import(self, scope: Scope, receive: Receive, send: Send, request_id: str, key: str, query: dict[str, str]) -> int:
        self.svc.signer.verify("PUT", key, query)
        imp = await self.svc.imports.receive(key[len("imports/"):], _content_length(scope), RequestBody(receive))
        payload = envelope({"data": {"import_id": imp.id, "status": imp.status, "size_bytes": imp.size_bytes}}, request_id)
        await send_json(send, 200, payload, request_id)
        return 200

    async def _get(self, send: Send, request_id: str, key: str, query: dict[str, str], *, head: bool) -> int:
        signed = self.svc.signer.verify("GET", key, query)
        blob_id = key[len("objects/"):]
        obj = await self.svc.store.get_object_by_blob(blob_id)
        path = self.blobs.object_path(blob_id)
        try:
            fh = await trio.open_file(path, "rb")
        except FileNotFoundError:
            raise NotFound("the object's bytes are gone (deleted, rejected or expired)") from None
        async with fh:
            size = (await trio.to_thread.run_sync(os.fstat, fh.fileno())).st_size
            if size != signed.length:
                raise InvalidSignature("the URL does not match the stored object")
            filename = quote(obj.original_filename) if obj else blob_id
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", (obj.mime_type if obj else "application/octet-stream").encode()),
                    (b"content-length", str(size).encode()),
                    (b"content-disposition", f"attachment; filename*=UTF-8''{filename}".encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            })
            if not head:
                while chunk := await fh.read(READ_CHUNK):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        return 200


def create_asgi(svc: Services, quart_app: Any) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """One ASGI app: ``/blobs/`` to :class:`BlobRoutes` (local blobs), everything else to Quart."""
    if not isinstance(svc.blobs, LocalBlobStore):
        return quart_app
    blobs = BlobRoutes(svc, svc.blobs)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/blobs/"):
            await blobs(scope, receive, send)
        else:
            await quart_app(scope, receive, send)

    return app
