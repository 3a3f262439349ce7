"""A small response's head and body leave in one socket write.

Hypercorn's HTTP/1.1 protocol writes a response's head when the app sends
``http.response.start`` and its body when the app sends the body: two ``send`` calls for
every JSON answer, and on a keep-alive connection two wake-ups of the client, which reads
the head, finds no body yet and waits again. A small upload is three such answers
(initiate, PUT, confirm), so that was six socket writes and six wake-ups where three do.

:func:`install` wraps Hypercorn's ``H11Protocol.stream_send``: the head of a final response
whose ``Content-Length`` is at most :data:`MAX_HELD_BODY` is encoded by h11 as always but
kept, and goes out in the same write as the body's bytes (or alone before whatever the
stream sends next: the end of an empty body, the stream closing). Streaming responses
(no Content-Length) and large ones (downloads) are written as before, so their head is
never held waiting for a body. Installed only on the pinned Hypercorn and h11
(:mod:`engine.http.pins`), otherwise Hypercorn is left alone and the engine says so.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import h11
import structlog
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, Response
from hypercorn.protocol.h11 import H11Protocol

from engine.http import pins

log = structlog.get_logger(__name__)

MAX_HELD_BODY = 64 * 1024  # a response declaring at most this many bytes sends them with its head

_original = H11Protocol.stream_send


def _small(headers: Any) -> bool:
    for name, value in headers:
        if name.lower() == b"content-length":
            return value.isdigit() and int(value) <= MAX_HELD_BODY
    return False


def _encode(protocol: H11Protocol, event: Any) -> bytes | None:
    """h11's bytes for ``event``, as Hypercorn's ``_send_h11_event`` gets them (None: nothing to send)."""
    try:
        return protocol.connection.send(event)
    except h11.LocalProtocolError:
        if protocol.connection.their_state != h11.ERROR:
            raise
        return None


async def stream_send(self: H11Protocol, event: Any) -> None:
    """``H11Protocol.stream_send``, but the head of a small final response waits for its body."""
    held: bytes | None = self.__dict__.pop("_ipto_head", None)
    if held is None:
        if isinstance(event, Response) and event.status_code >= 200 and _small(event.headers):
            headers = list(chain(event.headers, self.config.response_headers("h11")))
            if self.keep_alive_requests >= self.config.keep_alive_max_requests:
                headers.append((b"connection", b"close"))
            head = _encode(self, h11.Response(headers=headers, status_code=event.status_code))
            if head is not None:
                self.__dict__["_ipto_head"] = head
            return
        await _original(self, event)
        return
    if isinstance(event, Body):
        data = _encode(self, h11.Data(data=event.data))
        await self.send(RawData(data=held if data is None else held + data))
        return
    await self.send(RawData(data=held))
    await _original(self, event)


def install() -> bool:
    """Wrap Hypercorn's ``H11Protocol.stream_send`` in this process (idempotent). False, and
    Hypercorn left alone, on a release other than the pinned one."""
    if H11Protocol.stream_send is stream_send:
        return True
    if pins.mismatched():
        log.warning(
            "one_write_not_installed",
            reason="Hypercorn or h11 is not the release this wraps",
            wrapped=pins.WRAPPED,
            installed_otherwise=pins.mismatched(),
        )
        return False
    H11Protocol.stream_send = stream_send  # type: ignore[method-assign]
    return True
