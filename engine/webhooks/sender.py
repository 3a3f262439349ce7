"""One delivery attempt over HTTP (httpx on Trio).

* The host is resolved and checked (:mod:`.targets`) at every attempt and the connection
  goes to that checked address: the URL carries the address, ``Host`` the name, and TLS
  the name as SNI (and certificate name), so DNS rebinding cannot redirect it.
* Redirects are not followed (a 3xx is a failed attempt).
* At most ``max_response_bytes`` of the answer are read; the whole attempt is cut at
  ``timeout_seconds`` (connect to last byte), so a slow receiver holds one slot of its
  own endpoint, never the others'.
* One client per (host, address, port): kept-alive connections are reused, and never
  across names that share an address (SNI).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import trio

from engine.webhooks.targets import Target, TargetRefused, parse_url, resolve

EXCERPT_CHARS = 1024
MAX_CLIENTS = 256


@dataclass(frozen=True)
class SendResult:
    status_code: int | None  # None: no HTTP answer (refused target, connection error, timeout)
    error: str | None
    duration_ms: float
    excerpt: str | None  # the start of the answer's body


class Sender:
    """Sends attempts; owns its httpx clients (close with :meth:`aclose`)."""

    def __init__(self, *, allow_private: bool, timeout_seconds: float, max_response_bytes: int) -> None:
        self.allow_private = allow_private
        self.timeout = timeout_seconds
        self.max_bytes = max_response_bytes
        self._clients: dict[tuple[str, str, str, int], httpx.AsyncClient] = {}

    def _client(self, target: Target, ip: str) -> httpx.AsyncClient:
        key = (target.scheme, target.host, ip, target.port)
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) >= MAX_CLIENTS:  # forget the oldest (its connections close when collected)
                self._clients.pop(next(iter(self._clients)))
            client = httpx.AsyncClient(
                follow_redirects=False, trust_env=False, timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with trio.CancelScope(shield=True):
                await client.aclose()

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
            host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
            default_port = 443 if target.scheme == "https" else 80
            netloc = target.host if target.port == default_port else f"{target.host}:{target.port}"
            if ":" in target.host and not target.host.startswith("["):
                netloc = f"[{target.host}]" if target.port == default_port else f"[{target.host}]:{target.port}"
            request_url = f"{target.scheme}://{host}:{target.port}{target.path}"
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            client = self._client(target, str(ip))
            try:
                request = client.build_request("POST", request_url, content=body,
                                               headers={**headers, "host": netloc}, extensions=extensions)
                response = await client.send(request, stream=True)
                try:
                    kept = bytearray()
                    async for chunk in response.aiter_raw():
                        kept += chunk[: self.max_bytes - len(kept)]
                        if len(kept) >= self.max_bytes:
                            break  # the rest is never read (the connection is dropped)
                finally:
                    await response.aclose()
                return SendResult(response.status_code, None, took(), bytes(kept[:EXCERPT_CHARS]).decode("utf-8", "replace"))
            except httpx.TimeoutException:
                return SendResult(None, f"timeout after {self.timeout:g} s", took(), None)
            except httpx.HTTPError as exc:
                return SendResult(None, f"{type(exc).__name__}: {exc}"[:500], took(), None)
        assert scope.cancelled_caught
        return SendResult(None, f"timeout after {self.timeout:g} s", took(), None)
