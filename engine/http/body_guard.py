"""Every response finishes, whatever the app did with the request body.

Hypercorn hands a request body to the app through a small queue (``max_app_queue_size``,
2 messages), and the last step of every response waits to put an ``http.disconnect`` into
that queue. A route that answers without reading the body (a 405, a 413, a 401 on a
POST, a download sent with a body) leaves the queue full: the response never finishes,
the connection task waits forever, its socket stays in CLOSE-WAIT and a download's file
stays open. Enough of those and the process runs out of descriptors (issue 17).

:class:`BodyGuard` wraps the whole ASGI app (Quart and the blob routes alike) and makes
the outcome one of two, decided when the response starts:

* **reusable**: the unread rest of the body is read and discarded first, at most
  :data:`DRAIN_BYTES` within :data:`DRAIN_SECONDS` (a 405 on ``abc``, a JSON body a little
  over the limit). The response then goes out as the app wrote it, and h11 starts the next
  request on the connection.
* **closed**: a larger (or slower) rest is not worth reading. The response goes out with
  ``Connection: close``; while its last message is sent, whatever body arrives is
  discarded, so the ``http.disconnect`` fits into the queue and Hypercorn closes the
  socket.

An app that ends without answering at all gets a 500 in the error envelope here, by the
same path (so Hypercorn's own bare 500 never has to wait on a full queue either).

A request whose query string holds NUL (``%00``) never reaches the app: it is a 400
``invalid_request`` here. No filter, cursor or name can hold NUL, and PostgreSQL cannot
even compare text with NUL in it (``?dataset_id=ds_%00`` would be a 500 there and an empty
list on SQLite). JSON bodies are refused the same way (``engine.http.validate``); a path
parameter with NUL matches no route (``engine.http.app.Segment``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio

from engine.http.respond import error_body
from engine.ids import new_id

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = structlog.get_logger(__name__)

# What a response waits to read of an unread body before it gives up on keeping the
# connection: bounded in bytes and in time, whatever the client sends.
DRAIN_BYTES = 256 * 1024
DRAIN_SECONDS = 1.0


def _declared_length(scope: Scope) -> tuple[int | None, bool]:
    """``(Content-Length, has a body at all)`` from the request's headers."""
    length: int | None = None
    body = False
    for name, value in scope.get("headers", ()):
        lowered = name.lower()
        if lowered == b"content-length":
            body = True
            length = int(value) if value.isdigit() else None
        elif lowered == b"transfer-encoding":
            body = True
    return length, body


class _Exchange:
    """One request/response: what the app has read, what it has sent."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.length, has_body = _declared_length(scope)
        self.body_done = not has_body or self.length == 0
        self.disconnected = False
        self.received = 0
        self.started = False
        self.finished = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.disconnected = True
        elif message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.body_done = True
        return message

    @property
    def settled(self) -> bool:
        """Nothing of the body is left for Hypercorn to queue."""
        return self.body_done or self.disconnected

    async def _drain(self) -> bool:
        """Read and drop the rest of the body if it is small and quick; whether it was."""
        if self.length is not None and self.length - self.received > DRAIN_BYTES:
            return False
        start = self.received
        with trio.move_on_after(DRAIN_SECONDS):
            while not self.settled and self.received - start <= DRAIN_BYTES:
                await self.receive()
        return self.body_done

    async def _discard(self) -> None:
        while not self.disconnected:
            await self.receive()

    async def send(self, message: Message) -> None:
        try:
            await self._guarded_send(message)
        except* trio.BusyResourceError:  # bare, or from the nursery of the last send
            # The connection's reader is closing it meanwhile (Hypercorn's close sends EOF
            # without its send lock): this answer has nowhere to go, which is not the app's error.
            self.finished = True

    async def _guarded_send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            if not self.settled and not await self._drain():
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await self._send(message)
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.finished = True
            # Shielded: the last send goes on to recycle or close the connection, and an app
            # that cancels itself once it has seen the disconnect (Quart-Trio does) would
            # otherwise stop that half-way, leaving the socket open. Hypercorn shields its
            # socket writes already, so this adds no wait of its own.
            with trio.CancelScope(shield=True):
                if self.settled:
                    await self._send(message)
                    return
                # The last send returns once Hypercorn has queued http.disconnect for the
                # app: keep the queue moving meanwhile.
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._discard)
                    await self._send(message)
                    nursery.cancel_scope.cancel()
        else:
            await self._send(message)

    async def answer_500(self) -> None:
        request_id = new_id("req")
        await self.answer(500, error_body("internal", f"internal error; quote request id {request_id}", None, request_id),
                          request_id)

    async def answer(self, status: int, body: bytes, request_id: str) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode())]})
        await self.send({"type": "http.response.body", "body": body})


class BodyGuard:
    """ASGI middleware: every HTTP response leaves its connection reusable or closed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send)
        if b"%00" in scope.get("query_string", b""):
            request_id = new_id("req")
            await exchange.answer(400, error_body("invalid_request", "the query string holds the NUL character (%00)",
                                                  {"fields": {"query": "must not contain %00"}}, request_id), request_id)
            return
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            log.exception("asgi_app_failed", path=scope.get("path"))
        if not exchange.started and not exchange.disconnected:
            await exchange.answer_500()
