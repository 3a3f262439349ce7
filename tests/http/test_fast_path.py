"""The upload fast path is installed wherever the engine serves, on the pinned releases.

:mod:`engine.http.direct_body` and :mod:`engine.http.h11_buffer` patch private internals of
one Hypercorn and one h11 release and step aside (with a warning) on any other. That
fallback keeps the engine working, but at about half its upload speed, and nothing else
would notice: so these tests fail the run when the pins in pyproject.toml, the installed
releases and the releases the patches were written for disagree, or when a started
service is not using the fast path.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import httpx
from h11 import _connection as h11_connection
from hypercorn.events import RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio import tcp_server

from engine.http import direct_body, one_write, pins
from engine.http.h11_buffer import ZeroCopyReceiveBuffer

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_pyproject_pins_exactly_the_releases_the_fast_path_patches():
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for name, wrapped in pins.WRAPPED.items():
        (spec,) = [d for d in dependencies if re.match(rf"{name}\b", d, re.IGNORECASE)]
        assert spec.replace(" ", "").lower() == f"{name}=={wrapped}", f"{spec!r}: pin {name}=={wrapped} (engine/http/pins.py)"


def test_the_installed_releases_are_the_pinned_ones():
    assert {name: version(name) for name in pins.WRAPPED} == pins.WRAPPED
    assert pins.mismatched() == {}


async def test_a_started_service_reads_bodies_through_the_fast_path(service, client):
    assert (await client.get("/v1/health")).status_code == 200
    assert tcp_server.TCPServer._read_data is direct_body._read_data
    assert h11_connection.ReceiveBuffer is ZeroCopyReceiveBuffer
    assert H11Protocol.stream_send is one_write.stream_send


async def _writes(service, calls) -> list[bytes]:
    """What the server wrote to the socket, write by write, while ``calls(client)`` ran on a new connection."""
    writes: list[bytes] = []
    original = tcp_server.TCPServer.protocol_send

    async def recording(self, event):
        if isinstance(event, RawData) and event.data:
            writes.append(bytes(event.data))
        await original(self, event)

    tcp_server.TCPServer.protocol_send = recording
    try:
        async with httpx.AsyncClient(base_url=service.url) as fresh:  # a connection made after the patch
            await calls(fresh)
    finally:
        tcp_server.TCPServer.protocol_send = original
    return writes


async def test_a_small_answer_leaves_in_one_write_and_a_large_one_as_before(service, client):
    replies = []

    async def calls(fresh):
        replies.append(await fresh.get("/v1/health"))
        replies.append(await fresh.get("/v1/openapi.json"))  # larger than one_write.MAX_HELD_BODY

    writes = await _writes(service, calls)
    health, document = replies
    assert health.status_code == 200 and document.status_code == 200
    assert len(document.content) > one_write.MAX_HELD_BODY
    assert writes[0].startswith(b"HTTP/1.1 200") and writes[0].endswith(health.content)  # head and body together
    assert writes[1].startswith(b"HTTP/1.1 200") and writes[1].endswith(b"\r\n\r\n")  # the large answer's head alone
    assert b"".join(writes[2:]) == document.content
