"""One delivery attempt over HTTP/1.1 on Trio sockets, connections kept alive per target.

* A host name is resolved and checked (:mod:`.targets`) at every attempt (no caching:
  ``getaddrinfo`` does not say how long an answer may be kept), and the connection
  goes to that checked address: ``Host`` carries the name, and TLS the name as SNI (and
  certificate name), so DNS rebinding cannot redirect it. A kept-alive connection is only
  reused for the same (scheme, name, address, port). A host written as an address is
  checked once per URL (it cannot change).
* Redirects are not followed (a 3xx is a failed attempt).
* At most ``max_response_bytes`` of the answer are read (then the connection is dropped);
  the whole attempt is cut at ``timeout_seconds`` (connect to last byte), so a slow
  receiver holds one slot of its own endpoint, never the others'.

Why not httpx (which the engine used first): a delivery is one small POST and one small
answer, and httpx's client, transport and connection-pool layers were ~40 % of the
engine's CPU per delivery (bench/README.md, "Webhook fan-out"). Here a request is one
``send_all`` (head and body together). The head is formatted here, not by h11: its
constant part (request line, ``host``, ``content-type``, ``user-agent``) is made once per
URL, and only our own headers are added per attempt (h11's event validation and
formatting were ~45 µs a request). The answer is read by :class:`_Answer`, a strict
HTTP/1.1 response reader (status line, headers, ``content-length``, chunked or
close-delimited body, 1xx skipped): anything it does not understand fails the attempt.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import trio

from engine.webhooks.targets import IpAddress, Target, TargetRefused, forbidden, parse_url, resolve

EXCERPT_CHARS = 1024
MAX_IDLE_PER_TARGET = 8  # kept-alive connections per (scheme, name, address, port)
MAX_TARGETS = 256  # targets with idle connections kept; the oldest are closed past this
READ_BYTES = 65536
MAX_HEAD_BYTES = 65536  # an answer's status line and headers, at most
MAX_PREPARED = 1024  # URLs whose parsed target and constant head are kept
USER_AGENT = "ipto-webhooks/1"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?")
_FIELD_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")
_REQUEST_TARGET = re.compile(r"[\x21-\x7e]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")

_Key = tuple[str, str, str, int]


@dataclass(frozen=True)
class SendResult:
    status_code: int | None  # None: no HTTP answer (refused target, connection error, timeout)
    error: str | None
    duration_ms: float
    excerpt: str | None  # the start of the answer's body


class _Conn:
    __slots__ = ("stream",)

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream


class ProtocolError(Exception):
    """The receiver's answer is not HTTP/1.1 this reader accepts."""


@dataclass(frozen=True)
class _Prepared:
    """What every attempt to one URL shares."""

    target: Target
    head: bytes  # request line and constant headers, each line ending in CRLF
    literal: IpAddress | None  # the host when it is an allowed address literal (no lookup needed)


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
        self._prepared: dict[str, _Prepared] = {}

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await trio.aclose_forcefully(conn.stream)

    def _prepare(self, url: str) -> _Prepared:
        """The parsed target and constant head of ``url`` (kept); TargetRefused if unusable."""
        found = self._prepared.get(url)
        if found is not None:
            return found
        target = parse_url(url)
        if not _REQUEST_TARGET.fullmatch(target.path):
            raise TargetRefused("url path must be printable ASCII without spaces")
        try:
            literal: IpAddress | None = ipaddress.ip_address(target.host)
        except ValueError:
            literal = None
        if literal is not None and not self.allow_private and forbidden(literal):
            literal = None  # refused by resolve(), at every attempt, with its message
        default_port = 443 if target.scheme == "https" else 80
        host = f"[{target.host}]" if ":" in target.host else target.host
        netloc = host if target.port == default_port else f"{host}:{target.port}"
        head = (f"POST {target.path} HTTP/1.1\r\nhost: {netloc}\r\ncontent-type: application/json\r\n"
                f"user-agent: {USER_AGENT}\r\n").encode("ascii")
        if len(self._prepared) >= MAX_PREPARED:
            self._prepared.clear()
        found = self._prepared[url] = _Prepared(target, head, literal)
        return found

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        """POST ``body`` to ``url`` with ``headers`` beside the constant ones (``host``,
        ``content-type: application/json``, ``user-agent``, ``content-length``)."""
        started = time.perf_counter()

        def took() -> float:
            return round((time.perf_counter() - started) * 1000, 3)

        with trio.move_on_after(self.timeout) as scope:
            try:
                prepared = self._prepare(url)
                target = prepared.target
                ip = prepared.literal if prepared.literal is not None else await resolve(target, self.allow_private)
                request = _request(prepared.head, headers, body)
            except TargetRefused as exc:
                return SendResult(None, f"target_refused: {exc}", took(), None)
            key = (target.scheme, target.host, str(ip), target.port)
            try:
                conns = self._idle.get(key)
                while conns:  # a kept-alive connection first; one the receiver closed meanwhile is dropped
                    conn = conns.pop()
                    try:
                        return await self._exchange(key, conn, request, took, reused=True)
                    except _Stale:
                        continue
                conn = await self._connect(target, ip)
                try:
                    return await self._exchange(key, conn, request, took, reused=False)
                except _Stale:
                    return SendResult(None, "ConnectionClosed: closed before any answer", took(), None)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError) as exc:
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

    async def _exchange(self, key: _Key, conn: _Conn, request: bytes, took: Callable[[], float], *, reused: bool) -> SendResult:
        """One request on ``conn`` and its answer; ``conn`` goes back to the idle ones if it can.
        ``_Stale``: ``reused`` and closed before any answer (nothing was processed)."""
        answer = _Answer(conn.stream, self.max_bytes)
        keep = False
        try:
            await conn.stream.send_all(request)
            keep = await answer.read()
        except (ProtocolError, trio.BrokenResourceError, OSError):
            if answer.status is None and not answer.received and reused:  # reset or closed by the receiver while it sat idle
                raise _Stale from None
            raise
        finally:
            if keep:
                self._keep(key, conn)
            else:
                await trio.aclose_forcefully(conn.stream)
        assert answer.status is not None
        return SendResult(answer.status, None, took(), bytes(answer.kept[:EXCERPT_CHARS]).decode("utf-8", "replace"))

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


def _request(head: bytes, headers: Mapping[str, str], body: bytes) -> bytes:
    """The whole request: ``head`` (constant), our headers (checked: a name a token, a value
    printable ASCII), ``content-length``, the body."""
    lines = []
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise TargetRefused(f"header {name!r} cannot be sent")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {len(body)}\r\n\r\n")
    return head + "".join(lines).encode("ascii") + body


class _Answer:
    """Reads one HTTP/1.1 answer from ``stream``: ``status``, the first ``max_bytes`` of its
    body (``kept``); :meth:`read` says whether the connection can carry another request."""

    def __init__(self, stream: trio.abc.Stream, max_bytes: int) -> None:
        self.stream = stream
        self.max_bytes = max_bytes
        self.status: int | None = None
        self.kept = bytearray()
        self.received = False  # any byte at all
        self._buf = b""

    async def _more(self) -> bool:
        """Read more into the buffer; False at the end of the stream."""
        data = await self.stream.receive_some(READ_BYTES)
        if not data:
            return False
        self.received = True
        self._buf += data
        return True

    async def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line, self._buf = self._buf[:end], self._buf[end + 2 :]
                return line
            if len(self._buf) > MAX_HEAD_BYTES:
                raise ProtocolError("a line of the answer is too long")
            if not await self._more():
                raise trio.BrokenResourceError("the receiver closed the connection before the answer's end")

    async def read(self) -> bool:
        while True:  # 1xx answers are skipped: the final one follows
            version, status, fields = await self._head()
            if not 100 <= status < 200:
                break
            if status == 101:
                raise ProtocolError("the receiver switched protocols")
        self.status = status
        connection = {t.strip().lower() for t in b",".join(fields.get(b"connection", [])).split(b",")}
        keep = version == b"1" and b"close" not in connection
        if status in (204, 304):
            length: int | None = 0
        elif b"transfer-encoding" in fields:
            if [v.strip().lower() for v in fields[b"transfer-encoding"]] != [b"chunked"]:
                raise ProtocolError("unsupported transfer-encoding")
            return await self._chunked() and keep
        elif b"content-length" in fields:
            values = {v.strip() for v in fields[b"content-length"]}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise ProtocolError("bad content-length")
            length = int(next(iter(values)))
        else:
            length = None  # the body ends when the connection closes
        if length is None:
            while len(self.kept) < self.max_bytes:
                self._take(len(self._buf))
                if not await self._more():
                    break
            return False
        whole = await self._body(length)
        return whole and keep and not self._buf  # nothing may follow an answer we did not ask for

    async def _head(self) -> tuple[bytes, int, dict[bytes, list[bytes]]]:
        match = _STATUS_LINE.fullmatch(await self._line())
        if match is None:
            raise ProtocolError("the answer does not start with an HTTP/1.x status line")
        size = 0
        fields: dict[bytes, list[bytes]] = {}
        while True:
            line = await self._line()
            if not line:
                return match.group(1), int(match.group(2)), fields
            size += len(line)
            if size > MAX_HEAD_BYTES:
                raise ProtocolError("the answer's head is too long")
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
                raise ProtocolError("malformed header line in the answer")
            fields.setdefault(name.lower(), []).append(value.strip(b" \t"))

    def _take(self, n: int) -> None:
        """Keep up to ``max_bytes`` of the next ``n`` buffered body bytes; drop them from the buffer."""
        room = self.max_bytes - len(self.kept)
        if room > 0:
            self.kept += self._buf[: min(n, room)]
        self._buf = self._buf[n:]

    async def _body(self, length: int) -> bool:
        """``length`` bytes of body; False when ``max_bytes`` were kept first (the rest is never read)."""
        while length:
            if not self._buf and not await self._more():
                raise trio.BrokenResourceError("the receiver closed the connection before the answer's end")
            n = min(length, len(self._buf))
            self._take(n)
            length -= n
            if length and len(self.kept) >= self.max_bytes:
                return False
        return True

    async def _chunked(self) -> bool:
        while True:
            size_text = (await self._line()).split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                raise ProtocolError("bad chunk size")
            size = int(size_text, 16)
            if size == 0:
                while await self._line():  # trailers, up to the empty line
                    pass
                return not self._buf
            if not await self._body(size) or len(self.kept) >= self.max_bytes:
                return False  # enough was read: the rest never is (the connection is dropped)
            if await self._line():
                raise ProtocolError("a chunk does not end with CRLF")
