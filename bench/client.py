"""The benchmark's clients, all async under trio.

* :class:`Api` — ``httpx.AsyncClient`` for set-up calls (sign-up, datasets, deletes).
* :class:`Conn` — one keep-alive HTTP/1.1 connection with a minimal request/response codec,
  for load. Measured here: httpx spends ~1.1 ms of client CPU per request under trio and its
  pool collapses at 128 connections (46 req/s with this process at 100 % CPU), i.e. it is
  slower than the server it is meant to measure; ``Conn`` costs tens of µs, so the figures
  are the server's.
* :func:`send_file` — a request whose body is a file range sent with ``os.sendfile`` from the
  page cache straight into the socket (zero-copy); the same sender does our presigned
  ``PUT`` and the tus peer's ``PATCH``.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import trio

PASSWORD = "bench password, long enough"


class ApiError(Exception):
    """A non-2xx answer from the engine: its status and error code."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class Api:
    """The engine's JSON API through one ``httpx.AsyncClient`` with a pool of ``connections``."""

    def __init__(self, base: str, *, token: str | None = None, connections: int = 16, timeout: float = 120.0) -> None:
        self.base = base
        self.token = token
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=60)
        self.http = httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout)

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return out | (extra or {})

    async def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None) -> Any:
        """The envelope's ``data``; :class:`ApiError` for any status >= 300."""
        content = None if body is None else orjson.dumps(body)
        hdrs = self.headers(headers)
        if content is not None:
            hdrs["Content-Type"] = "application/json"
        reply = await self.http.request(method, path, content=content, headers=hdrs)
        if reply.status_code >= 300:
            code = "?"
            try:
                err = orjson.loads(reply.content).get("error") or {}
                code, message = err.get("code", "?"), err.get("message", "")
            except (orjson.JSONDecodeError, AttributeError):
                message = reply.text[:200]
            raise ApiError(reply.status_code, code, message)
        return orjson.loads(reply.content)["data"] if reply.content else None

    async def signup(self, email: str) -> str:
        self.token = (await self.call("POST", "/v1/auth/signup", {"email": email, "password": PASSWORD}))["token"]
        return self.token

    async def login(self, email: str, password: str) -> str:
        return str((await self.call("POST", "/v1/auth/login", {"email": email, "password": password}))["token"])

    async def datasets(self, count: int, prefix: str = "bench", schema: dict[str, Any] | None = None) -> list[str]:
        out = []
        for i in range(count):
            body: dict[str, Any] = {"name": f"{prefix} {i}"}
            if schema is not None:
                body["schema"] = schema
            out.append((await self.call("POST", "/v1/datasets", body))["dataset_id"])
        return out


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def data(self, expect: int = 200) -> Any:
        """The envelope's ``data``; :class:`ApiError` unless the status is ``expect``."""
        if self.status != expect:
            try:
                err = orjson.loads(self.body).get("error") or {}
                code, message = err.get("code", "?"), err.get("message", "")
            except (orjson.JSONDecodeError, AttributeError):
                code, message = "?", self.body[:200].decode("latin-1")
            raise ApiError(self.status, code, message)
        return orjson.loads(self.body)["data"]


class _Reader:
    """Buffered reads of HTTP/1.1 responses from one socket (Content-Length or chunked)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buf = bytearray()

    async def _fill(self) -> None:
        chunk = await self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    async def _until(self, marker: bytes) -> bytes:
        while (i := self.buf.find(marker)) < 0:
            await self._fill()
        out = bytes(self.buf[:i])
        del self.buf[: i + len(marker)]
        return out

    async def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def reply(self, head_only: bool = False) -> Reply:
        lines = (await self._until(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if head_only or status in (204, 304) or 100 <= status < 200:
            return Reply(status, headers, b"")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while size := int((await self._until(b"\r\n")).split(b";")[0], 16):
                body += await self._exactly(size)
                await self._until(b"\r\n")
            await self._until(b"\r\n")
            return Reply(status, headers, bytes(body))
        return Reply(status, headers, await self._exactly(int(headers.get("content-length", "0"))))


async def _send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        sent = await sock.send(view)
        view = view[sent:]


class Conn:
    """One keep-alive HTTP/1.1 connection to ``base`` (re-opened if the server closes it).

    ``await conn.request("POST", "/v1/…", json=…, token=…)`` → :class:`Reply`. One request at a
    time: a closed-loop client owns one ``Conn``, as a real client owns its connection."""

    def __init__(self, base: str) -> None:
        u = urlsplit(base)
        self.host, self.port, self.netloc = u.hostname or "127.0.0.1", u.port or 80, u.netloc
        self.sock: trio.socket.SocketType | None = None
        self.reader: _Reader | None = None

    async def _open(self) -> tuple[trio.socket.SocketType, _Reader]:
        if self.sock is None or self.reader is None:
            sock = trio.socket.socket()
            try:
                await sock.connect((self.host, self.port))
            except BaseException:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock, self.reader = sock, _Reader(sock)
        return self.sock, self.reader

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = None

    async def request(self, method: str, target: str, *, json: Any = None, body: bytes | None = None,
                      token: str | None = None, headers: dict[str, str] | None = None) -> Reply:
        if json is not None:
            body = orjson.dumps(json)
        u = urlsplit(target)
        path = (u.path + (f"?{u.query}" if u.query else "")) if u.scheme else target
        head = [f"{method} {path} HTTP/1.1\r\nHost: {self.netloc}\r\n"]
        if body is not None:
            head.append(f"Content-Length: {len(body)}\r\n")
        if json is not None:
            head.append("Content-Type: application/json\r\n")
        if token:
            head.append(f"Authorization: Bearer {token}\r\n")
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}\r\n")
        head.append("\r\n")
        big = body is not None and len(body) > 65536
        data = "".join(head).encode() + (b"" if big or body is None else body)
        for attempt in (1, 2):
            reused = self.sock is not None
            sock, reader = await self._open()
            try:
                await _send_all(sock, data)
                if big:
                    await _send_all(sock, body)  # type: ignore[arg-type]  # no copy of a large body
                reply = await reader.reply(head_only=method == "HEAD")
                break
            except (ConnectionError, OSError) as exc:
                self.close()
                # a kept-alive connection the server had already closed (idle timeout): once more
                # on a fresh one, as any HTTP client does; anything else is the server's answer
                if not (reused and attempt == 1 and not isinstance(exc, TimeoutError)):
                    raise
            except BaseException:
                self.close()
                raise
        if reply.headers.get("connection", "").lower() == "close":
            self.close()
        return reply

    async def __aenter__(self) -> Conn:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def send_file(url: str, path: Path, offset: int, length: int, *, method: str = "PUT",
                    headers: dict[str, str] | None = None) -> Reply:
    """``method url`` with ``length`` bytes of ``path`` from ``offset`` as the body, sent with
    ``os.sendfile`` on a non-blocking socket (zero-copy); one connection per request."""
    u = urlsplit(url)
    target = u.path + (f"?{u.query}" if u.query else "")
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (f"{method} {target} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Length: {length}\r\n{extra}"
            "Connection: close\r\n\r\n").encode()
    sock = trio.socket.socket()
    try:
        await sock.connect((u.hostname, u.port))
        await _send_all(sock, head)
        fd = os.open(path, os.O_RDONLY)
        try:
            done = 0
            while done < length:
                try:
                    n = os.sendfile(sock.fileno(), fd, offset + done, length - done)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                        break  # the server answered early (and closed): read what it said
                    raise
                if n == 0:
                    raise EOFError(f"{path} ended before offset {offset + length}")
                done += n
        finally:
            os.close(fd)
        return await _Reader(sock).reply()
    finally:
        sock.close()
