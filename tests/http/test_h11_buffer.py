"""The zero-copy h11 receive buffer: h11 parses exactly as with its own buffer, however
the bytes are split, and a body chunk received whole is handed on without a copy."""

from __future__ import annotations

import random

import h11
import pytest
from h11 import _connection as h11_connection
from h11._receivebuffer import ReceiveBuffer

from engine.http import h11_buffer
from engine.http.h11_buffer import ZeroCopyReceiveBuffer

STREAM = (
    b"PUT /blobs/uploads/u1?part=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n" + (bytes(range(256)) * 1172)[:300000]
    + b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    + b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n"
    + b"PUT /blobs/imports/i1 HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n" + b"z" * 70000
)


def _events(pieces: list[bytes], buffer: ReceiveBuffer, uncopied: list[int] | None = None) -> list[tuple[str, object]]:
    """What a server-side h11 connection using ``buffer`` makes of ``pieces``, answering
    each request so that the next one is parsed; ``uncopied`` gets one entry per Data event
    whose data is a received ``bytes`` object itself."""
    conn = h11.Connection(h11.SERVER)
    conn._receive_buffer = buffer
    out: list[tuple[str, object]] = []
    for piece in [*pieces, b""]:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Data):
                out.append(("data", bytes(event.data)))
                if uncopied is not None and any(event.data is piece for piece in pieces):
                    uncopied.append(1)
            elif isinstance(event, h11.Request):
                out.append(("request", (event.method, event.target, list(event.headers))))
            else:
                out.append((type(event).__name__, None))
            if isinstance(event, h11.EndOfMessage):
                conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
            if isinstance(event, h11.ConnectionClosed):
                return out
    return out


@pytest.mark.parametrize("seed", range(40))
def test_h11_parses_the_same_events_with_either_buffer_however_the_bytes_are_split(seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 60)))
    if seed % 4 == 0:  # also cut right after a request's headers, where body chunks start whole
        body = STREAM.index(b"\r\n\r\n") + 4
        cuts = sorted({*cuts, body, body + 1000})
    pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
    stock = _events(pieces, ReceiveBuffer())
    uncopied: list[int] = []
    ours = _events(pieces, ZeroCopyReceiveBuffer(), uncopied)
    assert ours == stock
    if seed % 4 == 0:
        assert uncopied  # the piece of body that arrived alone went through untouched
    assert sum(len(data) for kind, data in ours if kind == "data") == 300000 + 11 + 70000
    assert [kind for kind, _ in ours].count("request") == 4


def test_a_body_chunk_received_whole_reaches_the_app_as_the_same_object():
    head = b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    conn = h11.Connection(h11.SERVER)
    conn._receive_buffer = ZeroCopyReceiveBuffer()
    conn.receive_data(head)
    assert isinstance(conn.next_event(), h11.Request)
    assert conn.next_event() is h11.NEED_DATA
    chunk = b"0123456"
    conn.receive_data(chunk)
    event = conn.next_event()
    assert isinstance(event, h11.Data) and event.data is chunk and bytes(event.data) is chunk  # no copy at all
    conn.receive_data(b"789")
    event = conn.next_event()
    assert isinstance(event, h11.Data) and bytes(event.data) == b"789"
    assert isinstance(conn.next_event(), h11.EndOfMessage)


def test_install_replaces_h11s_buffer_only_when_it_knows_every_method(monkeypatch):
    monkeypatch.setattr(h11_connection, "ReceiveBuffer", ReceiveBuffer)
    monkeypatch.setattr(ReceiveBuffer, "new_method", lambda self: None, raising=False)
    assert h11_buffer.install() is False and h11_connection.ReceiveBuffer is ReceiveBuffer
    monkeypatch.delattr(ReceiveBuffer, "new_method")
    assert h11_buffer.install() is True and h11_connection.ReceiveBuffer is ZeroCopyReceiveBuffer
    assert h11_buffer.install() is True  # idempotent
