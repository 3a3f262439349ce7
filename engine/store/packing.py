"""Accepted records at rest: a batch's JSON texts joined by newlines (JSON text holds no raw
newline) and compressed with zstd, level 1.

A batch is packed where it is read (an import's reader process), so the server receives,
and SQLite writes, a fraction of the bytes; a page of datapoints unpacks its chunks.
"""

from __future__ import annotations

from collections.abc import Sequence

import zstandard

LEVEL = 1  # ~1 GB/s to pack on one core; higher levels cost more than the bytes they save here


def pack(texts: Sequence[bytes]) -> bytes:
    return zstandard.compress(b"\n".join(texts), LEVEL)


def unpack_text(packed: bytes) -> str:
    """The records of one packed batch as text, one per line."""
    return zstandard.decompress(packed).decode()


def unpack(packed: bytes) -> list[str]:
    """The records of one packed batch, in order."""
    return unpack_text(packed).split("\n")
