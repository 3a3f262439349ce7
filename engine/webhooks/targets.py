"""Where a webhook may point: URL shape, and addresses that are not the public internet.

A target whose host resolves to a private, loopback, link-local (cloud metadata lives at
169.254.169.254), multicast, reserved or otherwise non-global address is refused, unless
``webhooks.allow_private_targets``. The check runs at creation (400) and again at every
delivery, and the sender connects to the very address it checked, so a DNS answer that
changes between the check and the connection (rebinding) cannot send it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna
import trio

from engine.errors import InvalidRequest

MAX_URL_LENGTH = 2048
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The target cannot be used (bad URL, no address, or a forbidden one); the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (a name or an address)
    port: int
    path: str  # path and query, at least "/"


def parse_url(url: str) -> Target:
    """The parts of an http(s) URL; TargetRefused when it is not one a webhook may use."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"url must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"url is not valid: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("url must be http:// or https://")
    if not parts.hostname:
        raise TargetRefused("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("url must not carry credentials")
    if parts.fragment:
        raise TargetRefused("url must not have a fragment")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, _ascii_host(parts.hostname), port or (443 if parts.scheme == "https" else 80), path)


def _ascii_host(host: str) -> str:
    """An internationalized name as its A-label (``bücher.example`` → ``xn--bcher-kva.example``),
    the one form the lookup, the ``Host`` header and TLS's SNI all take."""
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise TargetRefused(f"the host {host} is not a valid host name: {exc}") from None


def forbidden(ip: IpAddress) -> bool:
    """Whether ``ip`` is not a public internet address (private, loopback, link-local, metadata, …)."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return forbidden(mapped)
    return not ip.is_global or ip.is_multicast


async def resolve(target: Target, allow_private: bool) -> IpAddress:
    """The address to connect to: every address the host resolves to must be allowed (one
    bad answer refuses the target: the attacker need not win a race), and the first is used."""
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = await trio.socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TargetRefused(f"the host {target.host} does not resolve: {exc}") from None
        except UnicodeError as exc:  # IDNA: an empty label (a..b), one over 63 characters, a code point it refuses
            raise TargetRefused(f"the host {target.host} is not a valid host name: {exc}") from None
        found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not found:
            raise TargetRefused(f"the host {target.host} has no address")
    if not allow_private:
        bad = [str(ip) for ip in found if forbidden(ip)]
        if bad:
            raise TargetRefused(f"the host {target.host} resolves to a private, loopback or link-local address ({bad[0]})")
    return found[0]


async def check_for_creation(url: str, allow_private: bool) -> None:
    """400 ``invalid_request`` naming ``url`` when the target may not be used."""
    try:
        await resolve(parse_url(url), allow_private)
    except TargetRefused as exc:
        raise InvalidRequest(str(exc), {"fields": {"url": str(exc)}}) from None
