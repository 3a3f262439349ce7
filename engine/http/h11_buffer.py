"""Request bodies through h11 without three of their four copies.

Hypercorn parses HTTP/1.1 with h11, whose ``ReceiveBuffer`` appends every chunk read from
the socket to a ``bytearray``, then copies each body slice out of it twice
(``maybe_extract_at_most`` slices, and ``_extract`` slices again); Hypercorn copies the
result once more (``bytes(event.data)``). With uploads, those copies of every byte were
most of the event loop's time (bench/README.md).

:class:`ZeroCopyReceiveBuffer` keeps a chunk that arrives into an empty buffer as the
``bytes`` object it is, and hands it out whole when the body being read wants all of it:
h11 then gives Hypercorn that very object, and ``bytes()`` of a ``bytes`` is the object
itself. Anything else (headers, a chunk that ends one body and begins the next request,
chunked framing) first appends the kept chunk to h11's bytearray and then runs h11's own
code, unchanged. :func:`install` puts the class in place of h11's, only if h11's buffer
still has exactly the methods this one wraps and h11 is the pinned release
(:mod:`engine.http.pins`); otherwise it leaves h11 as
it is and says so.
"""

from __future__ import annotations

import structlog
from h11 import _connection as h11_connection
from h11._receivebuffer import ReceiveBuffer

from engine.http import pins

log = structlog.get_logger(__name__)

# Every method of h11's ReceiveBuffer; each is wrapped below. A new one would read
# ``_data`` without the kept chunk, so install() refuses an h11 that has others.
_WRAPPED = {
    "__init__", "__iadd__", "__bool__", "__len__", "__bytes__", "_extract", "maybe_extract_at_most",
    "maybe_extract_next_line", "maybe_extract_lines", "is_next_line_obviously_invalid_request_line",
}


class ZeroCopyReceiveBuffer(ReceiveBuffer):
    """h11's receive buffer, but a chunk received into an empty buffer is kept as is
    (``_whole``) and, when the body wants all of it, handed out without a copy."""

    def __init__(self) -> None:
        super().__init__()
        self._whole: bytes | None = None

    def _settle(self) -> None:
        """Append the kept chunk to h11's bytearray (``_data`` is empty whenever one is kept)."""
        if self._whole is not None:
            self._data += self._whole
            self._whole = None

    def __iadd__(self, byteslike: bytes | bytearray) -> ZeroCopyReceiveBuffer:
        if self._whole is None and not self._data and type(byteslike) is bytes:
            self._whole = byteslike
            return self
        self._settle()
        self._data += byteslike
        return self

    def __bool__(self) -> bool:
        return bool(len(self))

    def __len__(self) -> int:
        return len(self._data) + (0 if self._whole is None else len(self._whole))

    def __bytes__(self) -> bytes:
        self._settle()
        return super().__bytes__()

    def _extract(self, count: int) -> bytearray:
        self._settle()
        return super()._extract(count)

    def maybe_extract_at_most(self, count: int) -> bytearray | None:
        whole = self._whole
        if whole is not None and count >= len(whole):
            self._whole = None
            self._next_line_search = 0
            self._multiple_lines_search = 0
            # bytes where h11 says bytearray: its only caller wraps it in a Data event, whose
            # data h11 documents as any bytes-like object.
            return whole  # type: ignore[return-value]
        self._settle()
        return super().maybe_extract_at_most(count)

    def maybe_extract_next_line(self) -> bytearray | None:
        self._settle()
        return super().maybe_extract_next_line()

    def maybe_extract_lines(self) -> list[bytearray] | None:
        self._settle()
        return super().maybe_extract_lines()

    def is_next_line_obviously_invalid_request_line(self) -> bool:
        self._settle()
        return super().is_next_line_obviously_invalid_request_line()


def install() -> bool:
    """Make every new h11 connection in this process use :class:`ZeroCopyReceiveBuffer`
    (idempotent). False, and h11 left alone, if h11's buffer is not the one this wraps."""
    if h11_connection.ReceiveBuffer is ZeroCopyReceiveBuffer:
        return True
    methods = {name for name, value in vars(ReceiveBuffer).items() if callable(value)}
    if h11_connection.ReceiveBuffer is not ReceiveBuffer or methods != _WRAPPED or "h11" in pins.mismatched():
        log.warning("h11_buffer_not_installed", reason="h11's ReceiveBuffer is not the one this wraps",
                    methods=sorted(methods ^ _WRAPPED), wrapped=pins.WRAPPED["h11"], installed_otherwise=pins.mismatched())
        return False
    h11_connection.ReceiveBuffer = ZeroCopyReceiveBuffer  # type: ignore[misc]
    return True
