"""One delivery attempt over HTTP/1.1: h11 on Trio sockets, connections kept alive per target.

* The host is resolved and checked (:mod:`.targets`) at every attempt and the connection
  goes to that checked address: ``Host`` carries the name, and TLS the name as SNI (and
  certificate name), so DNS rebinding cannot redirect it. A kept-alive connection is only
  reused for the same (scheme, name, address, port).
* Redirects are not followed (a 3xx is a failed attempt).
* At most ``max_response_bytes`` of the answer are read (then the connection is dropped);
  the whole attempt is cut at ``timeout_seconds`` (connect to last byte), so a slow
  receiver holds one slot of its own endpoint, never the others'.

Why not httpx (which the engine used first): a delivery is one small POST and one small
answer, and httpx's client, transport and connection-pool layers were ~40 % of the
engine's CPU per delivery (bench/README.md, "Webhook fan-out"). Here a request is one
``send_all`` (head and body together) and the answer is parsed by h11 straight from the
socket.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import h11
import trio

from engine.webhooks.targets import IpAddress, Target, TargetRefused, parse_url, resolve

EXCERPT_CHARS = 1024
MAX_IDLE_PER_TARGET = 8  # kept-alive connections per (scheme, name, address, port)
MAX_TARGETS = 256  # targets with idle connections kept; the oldest are closed past this
READ_BYTES = 65536

_Key = tuple[str, str, str, int]


@dataclass(frozen=True)
class SendResult:
    status_code: int | None  # None: no HTTP answer (refused target, connection error, timeout)
    error: str | None
    duration_ms: float
    excerpt: str | None  # the start of the answer's body


class _Conn:
    __slots__ = ("stream", "http")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)


class _Stale(Exception):
    """A kept-alive connection closed before any answer (the receiver timed it out): try a new one."""


class Sender:
    """Sends attempts; owns its kept-alive connections (close with :meth:`aclose`)."""

    def __init__(self, *, allow_private: bool, timeout_seconds: float, max_response_bytes: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.allow_private = allow_private
        self.timeout = timeout_seconds
        self.max_bytes = max_response_bytes
        self._ssl = ssl_context
        self._idle: dict[_Key, list[_Conn]] = {}

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await trio.aclose_forcefully(conn.stream)

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        started = time.perf_counter()

        def took() -> float:
            return round((time.perf_counter() - started) * 1000, 3)

        with trio.move_on_after(self.timeout) as scope:
            try:
                target = parse_url(url)
                ip = await resolve(target, self.allow_private)
            except TargetRefused as exc:
                return SendResult(None, f"target_refused: {exc}", took(), None)
            key = (target.scheme, target.host, str(ip), target.port)
            request = _request(target, headers, body)
            try:
                conns = self._idle.get(key)
                while conns:  # a kept-alive connection first; one the receiver closed meanwhile is dropped
                    conn = conns.pop()
                    try:
                        return await self._exchange(key, conn, request, body, took, reused=True)
                    except _Stale:
                        continue
                conn = await self._connect(target, ip)
                try:
                    return await self._exchange(key, conn, request, body, took, reused=False)
                except _Stale:
                    return SendResult(None, "ConnectionClosed: closed before any answer", took(), None)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
                return SendResult(None, _describe(exc)[:500], took(), None)
        assert scope.cancelled_caught
        return SendResult(None, f"timeout after {self.timeout:g} s", took(), None)

    async def _connect(self, target: Target, ip: IpAddress) -> _Conn:
        family = socket.AF_INET6 if isinstance(ip, ipaddress.IPv6Address) else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            await sock.connect((str(ip), target.port))
        except BaseException:
            sock.close()
            raise
        stream: trio.abc.Stream = trio.SocketStream(sock)  # sets TCP_NODELAY
        if target.scheme == "https":
            stream = trio.SSLStream(stream, self._tls(), server_hostname=target.host, https_compatible=True)
        return _Conn(stream)

    async def _exchange(self, key: _Key, conn: _Conn, request: h11.Request, body: bytes, took: Callable[[], float], *,
                        reused: bool) -> SendResult:
        """One request on ``conn`` and its answer; ``conn`` goes back to the idle ones if it can.
        ``_Stale``: ``reused`` and closed before any answer (nothing was processed)."""
        http = conn.http
        kept = bytearray()
        status: int | None = None
        keep = False
        try:
            await conn.stream.send_all(http.send(request) + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage()))
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    data = await conn.stream.receive_some(READ_BYTES)
                    if not data and status is None and reused:
                        raise _Stale
                    http.receive_data(bytes(data))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    kept += event.data[: self.max_bytes - len(kept)]
                    if len(kept) >= self.max_bytes:
                        break  # the rest is never read (the connection is dropped)
                elif isinstance(event, h11.EndOfMessage):
                    keep = http.our_state is h11.DONE and http.their_state is h11.DONE
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    if status is None and reused:
                        raise _Stale
                    raise trio.BrokenResourceError("the receiver closed the connection before the answer's end")
                # an InformationalResponse (1xx) is skipped: the final answer follows
        except (h11.RemoteProtocolError, trio.BrokenResourceError, OSError):
            if status is None and reused:  # reset or closed by the receiver while it sat idle
                raise _Stale from None
            raise
        finally:
            if keep:
                http.start_next_cycle()
                self._keep(key, conn)
            else:
                await trio.aclose_forcefully(conn.stream)
        assert status is not None
        return SendResult(status, None, took(), bytes(kept[:EXCERPT_CHARS]).decode("utf-8", "replace"))

    def _keep(self, key: _Key, conn: _Conn) -> None:
        idle = self._idle.get(key)
        if idle is None:
            if len(self._idle) >= MAX_TARGETS:  # forget the oldest target's idle connections
                for old in self._idle.pop(next(iter(self._idle))):
                    _close_now(old)
            idle = self._idle[key] = []
        if len(idle) >= MAX_IDLE_PER_TARGET:
            _close_now(conn)
        else:
            idle.append(conn)


def _describe(exc: BaseException) -> str:
    """``Type: message``, with what caused it (trio wraps a TLS failure in BrokenResourceError)."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__
    return text if cause is None else f"{text} ({_describe(cause)})"


def _close_now(conn: _Conn) -> None:
    stream = conn.stream
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        stream.socket.close()


def _request(target: Target, headers: Mapping[str, str], body: bytes) -> h11.Request:
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    netloc = host if target.port == default_port else f"{host}:{target.port}"
    fields = [("host", netloc), *headers.items(), ("content-length", str(len(body)))]
    return h11.Request(method="POST", target=target.path, headers=fields)
