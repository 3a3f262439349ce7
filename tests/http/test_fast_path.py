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

from h11 import _connection as h11_connection
from hypercorn.trio import tcp_server

from engine.http import direct_body, pins
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
