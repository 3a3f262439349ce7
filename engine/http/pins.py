"""The Hypercorn and h11 releases the upload fast path was written against.

:mod:`engine.http.direct_body` replaces Hypercorn's ``TCPServer._read_data`` with a copy
of its own and lowers h11's private ``ContentLengthReader._remaining``;
:mod:`engine.http.h11_buffer` subclasses h11's private ``ReceiveBuffer``. Both check at
install time that what they patch is what they expect and otherwise leave the library
alone, so a newer release would quietly halve upload speed. pyproject.toml therefore pins
exactly these releases, and ``tests/http/test_fast_path.py`` fails when the pins, the
installed releases and these versions disagree, or when a started service runs without the
fast path: a dependency bump is a deliberate change, re-checked against the new internals.
"""

from __future__ import annotations

from importlib.metadata import version

WRAPPED = {"hypercorn": "0.18.0", "h11": "0.16.0"}


def mismatched() -> dict[str, str]:
    """``{package: installed version}`` of each wrapped package installed at another release."""
    found = {name: version(name) for name in WRAPPED}
    return {name: v for name, v in found.items() if v != WRAPPED[name]}
