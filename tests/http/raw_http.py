"""Raw HTTP/1.1 over a trio socket, for tests where framing, timing and what shares a
connection are the test's choice (requests whose body the server does not read, early
disconnects), and for counting the server's open file descriptors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

# A hang bound, not a performance assertion: an answer that takes this long never comes.
HANG_SECONDS = 10


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


def head(method: str, target: str, host: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(body: bytes, size: int = 1000) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


class Conn:
    """One client connection: send bytes, read replies (h11 parses them), tell a closed socket."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self._pending = b""

    @classmethod
    async def open(cls, url: str) -> Conn:
        u = urlsplit(url)
        return cls(await trio.open_tcp_stream(u.hostname, u.port), u.netloc)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def send(self, data: bytes) -> bool:
        """Send; False if the server has closed (or reset) the connection meanwhile."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def _recv(self) -> bytes:
        try:
            return await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, ConnectionResetError):
            return b""

    async def reply(self, method: str = "GET") -> Reply | None:
        """The next reply on the connection, or None if the server closed it first."""
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("host", "x"), ("content-length", "0")]))
        conn.send(h11.EndOfMessage())
        if self._pending:
            conn.receive_data(self._pending)
            self._pending = b""
        status, headers, body = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await self._recv()
                if not data and status == 0:
                    return None
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._pending = conn.trailing_data[0]
                return Reply(status, headers, body)
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def closed_by_server(self) -> bool:
        """Whether the server closes its end (reads EOF or a reset, any unread bytes skipped)."""
        while True:
            data = self._pending or await self._recv()
            self._pending = b""
            if not data:
                return True

    async def health_after(self) -> str:
        """After a reply: ``answered`` if ``GET /v1/health`` is answered on this connection,
        ``closed`` if the server closed it instead."""
        if not await self.send(head("GET", "/v1/health", self.host)):
            return "closed"
        reply = await self.reply()
        if reply is None:
            return "closed"
        assert reply.status == 200, reply
        return "answered"


async def exchange_then_health(url: str, request: bytes, method: str = "GET", rest: bytes = b"") -> tuple[Reply | None, str]:
    """Send ``request`` (and ``rest`` of its body alongside, tolerating a close), read the
    reply, then check the connection: answered or closed (never left hanging)."""
    conn = await Conn.open(url)
    try:
        with trio.fail_after(HANG_SECONDS):
            await conn.send(request)
            async with trio.open_nursery() as nursery:
                if rest:
                    nursery.start_soon(conn.send, rest)
                reply = await conn.reply(method)
            if reply is None:
                return None, "closed"
            if reply.closes:
                assert await conn.closed_by_server(), "Connection: close, but the socket stays open"
                return reply, "closed"
            return reply, await conn.health_after()
    finally:
        await conn.aclose()


def open_fds() -> int:
    """File descriptors this process (the engine under test) holds open."""
    return len(os.listdir("/proc/self/fd"))


async def fds_settle(baseline: int, slack: int = 0) -> int:
    """Wait (bounded) for the open descriptor count to come back to ``baseline``; the count."""
    with trio.move_on_after(HANG_SECONDS):
        while open_fds() > baseline + slack:
            await trio.sleep(0.05)
    return open_fds()
