"""Upload bodies read from the socket by the thread that hashes and writes them.

Through Hypercorn, every 512 KiB of a body costs the event loop a socket read (the copy out
of the kernel into a fresh ``bytes``), h11's parsing and a few task switches; the hashing
thread then reads those bytes out of the other core's cache, where SHA-256 runs ~50 %
slower than over bytes its own core has just received (bench/README.md, "Upload"). So
once a request's body is flowing, the connection's reader hands the rest of it (all but
its last byte) to the app's :class:`Sink`, which reads it from the socket into the stream
thread's own buffer and hashes and writes it there, one core touching each byte once.
h11 is then told that those bytes were consumed and parses the last byte itself, so the
request ends as any other does (the response, keep-alive, the next request).

The hand-over waits until the sink has taken every body byte h11 already parsed, so the
bytes reach the sink in the order they were sent. It happens only on plain-TCP HTTP/1.1
requests whose body has a Content-Length, while the app has offered a sink (the local
blob routes do, see :class:`engine.http.blob_routes.RequestBody`); everything else
(TLS, chunked bodies, other routes) takes Hypercorn's path unchanged. :func:`install`
replaces Hypercorn's ``TCPServer._read_data`` with :func:`_read_data`, its own loop plus
the hand-over, only if Hypercorn's and h11's internals are the ones this was written
against; otherwise it leaves them alone and says so.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from contextvars import ContextVar
from typing import Any, Protocol

import h11
import structlog
import trio
from h11._readers import ContentLengthReader
from hypercorn.events import Closed, RawData
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio import tcp_server

from engine.http import pins

log = structlog.get_logger(__name__)

# Below this many body bytes left, a hand-over (a dup of the socket, a wait for the sink)
# is not worth it: the rest comes Hypercorn's way.
MIN_HANDOVER_BYTES = 64 * 1024



class Sink(Protocol):
    """What takes a body's bytes straight from the socket (:class:`engine.store.blobs.local.PartWriter`)."""

    @property
    def size(self) -> int:
        """Body bytes taken so far, either way."""

    async def receive_from(self, sock: socket.socket, count: int) -> int:
        """Read up to ``count`` bytes from the non-blocking ``sock`` and take them; how many
        were read (fewer only if the peer closed, the socket failed or taking them failed)."""


class Connection:
    """One client connection, as an app task on it sees it (:func:`current`)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.sink: Sink | None = None
        self._moved = trio.Event()

    def offer(self, sink: Sink | None) -> None:
        """The app offers ``sink`` for the body being received (None: no longer)."""
        self.sink = sink
        self.moved()

    def moved(self) -> None:
        """The sink took bytes, or the offer changed: wake a hand-over waiting for it."""
        self._moved.set()
        self._moved = trio.Event()

    async def _caught_up(self, parsed: int) -> Sink | None:
        """The sink, once it has taken ``parsed`` bytes; None if the offer is withdrawn first."""
        while self.sink is not None and self.sink.size < parsed:
            await self._moved.wait()
        return self.sink

    async def hand_over(self, reader: ContentLengthReader) -> None:
        remaining: int = reader._remaining
        sink = await self._caught_up(reader._length - remaining)
        if sink is None:
            return
        sock = _own_socket(self._fd)
        if sock is None:  # Hypercorn's way, as without a sink
            return
        try:
            sock.setblocking(False)
            got = await sink.receive_from(sock, remaining - 1)  # the last byte ends the body h11's way
        finally:
            trio.lowlevel.notify_closing(sock)
            sock.close()
        reader._remaining -= got


def _own_socket(fd: int) -> socket.socket | None:
    """A socket of its own on a dup of the connection's ``fd``, for a stream thread to read:
    whoever closes the connection's socket meanwhile, this file descriptor cannot be reused
    under the thread. None (and nothing left open) if one cannot be made."""
    dup = None
    try:
        dup = os.dup(fd)  # fails when out of file descriptors
        return socket.socket(fileno=dup)
    except OSError as exc:
        if dup is not None:
            os.close(dup)
        log.warning("direct_body_skipped", error=str(exc))
        return None


_current: ContextVar[Connection | None] = ContextVar("ipto_direct_body_connection", default=None)


def current() -> Connection | None:
    """The connection the calling app task serves, if its bodies can be handed over."""
    return _current.get()


def _body_reader(wrapper: ProtocolWrapper) -> ContentLengthReader | None:
    """h11's reader of the request body now arriving, if it counts a Content-Length."""
    protocol = getattr(wrapper, "protocol", None)
    if not isinstance(protocol, H11Protocol):
        return None
    conn = protocol.connection
    if not isinstance(conn, h11.Connection) or conn.their_state is not h11.SEND_BODY:
        return None
    reader = getattr(conn, "_reader", None)
    if type(reader) is not ContentLengthReader:
        return None
    return reader


async def _read_data(self: Any) -> None:
    """Hypercorn 0.18's ``TCPServer._read_data``, with the hand-over after each read."""
    stream = self.stream
    conn = Connection(stream.socket.fileno()) if isinstance(stream, trio.SocketStream) else None
    _current.set(conn)  # app tasks spawned from here on see it
    while True:
        try:
            with trio.fail_after(self.config.read_timeout or math.inf):
                data = await stream.receive_some(tcp_server.MAX_RECV)
        except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
            break
        else:
            try:
                await self.protocol.handle(RawData(bytes(data)))
            except trio.BusyResourceError:
                # Hypercorn's TCPServer._close (send_eof) takes no send lock: when the app's
                # task closes the connection while this one answers a protocol error (a client
                # gone mid-body), the answer finds the socket busy. The connection is ending
                # either way; uncaught, this would end the whole server.
                break
            if data == b"":
                break
            if conn is not None and conn.sink is not None:
                reader = _body_reader(self.protocol)
                if reader is not None and reader._remaining >= MIN_HANDOVER_BYTES:
                    try:
                        await conn.hand_over(reader)
                    except Exception:  # a bug: h11's count may be off, so the connection ends here
                        log.exception("direct_body_failed")
                        break
    with contextlib.suppress(trio.BusyResourceError):
        await self.protocol.handle(Closed())


_ORIGINAL = tcp_server.TCPServer._read_data


def install() -> bool:
    """Make every new connection of Hypercorn's Trio server in this process read through
    :func:`_read_data` (idempotent). False, and Hypercorn left alone, if its server or
    h11's body reader are not the ones this was written against."""
    if tcp_server.TCPServer._read_data is _read_data:
        return True
    probe = ContentLengthReader(10)
    expected = (
        not pins.mismatched()  # _read_data is a copy of that Hypercorn's, for that h11's reader
        and hasattr(tcp_server, "MAX_RECV")
        and isinstance(getattr(probe, "_remaining", None), int)
        and isinstance(getattr(probe, "_length", None), int)
    )
    if not expected:
        log.warning("direct_body_not_installed", reason="Hypercorn's reader or h11's body reader is not the one this wraps",
                    wrapped=pins.WRAPPED, installed_otherwise=pins.mismatched())
        return False
    tcp_server.TCPServer._read_data = _read_data  # type: ignore[method-assign]
    return True
