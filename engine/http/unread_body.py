"""Answering a request whose body was not read must not stall the connection.

Quart stops reading a request's body once its handler has answered (or never starts, for
a 405, a 413 or a route that takes no body). Hypercorn keeps feeding the rest of that body
to the app through a queue of ``max_app_queue_size`` (2) messages that nobody reads any
more: the connection's read loop blocks, and the client's *next* request on that
keep-alive connection is never answered (schemathesis found it: a 413, or a body sent to a
405 route, then any request hung). The blob routes solve it for themselves
(``BlobRoutes._refuse_upload``); this wrapper does the same for the Quart app: when the
response starts before the request's body has been received whole, the response says
``Connection: close`` and what is left of the body is discarded while the answer goes out.
A request without a body, or whose body was read, passes through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        lowered = name.lower()
        if lowered == b"content-length":
            return value.strip() not in (b"0", b"")
        if lowered == b"transfer-encoding":
            return True
    return False


def close_unread_bodies(app: App) -> App:
    """Wrap ``app`` (see the module docstring)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await app(scope, receive, send)
            return
        received = False

        async def tracking_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                received = True
            return message

        async def discard() -> None:
            nonlocal received
            while not received:
                await tracking_receive()

        async with trio.open_nursery() as nursery:

            async def guarded_send(message: Message) -> None:
                if message["type"] == "http.response.start" and not received:
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
                    nursery.start_soon(discard)
                await send(message)

            await app(scope, tracking_receive, guarded_send)
            nursery.cancel_scope.cancel()

    return wrapped
