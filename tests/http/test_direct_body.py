"""Upload bodies handed from Hypercorn's reader to the stream threads (engine/http/direct_body.py).

Once a PUT's body flows, the rest of it but the last byte is read from the socket by the
thread that hashes and writes it. These tests send over raw sockets, so that what shares a
connection, how the bytes are cut and when the client goes away are the test's choice, and
check that the bytes arrive whole and in order, that the request and the connection end as
any other, and that failures leave nothing behind.
"""

from __future__ import annotations

import errno
import os
from urllib.parse import urlsplit

import h11
import pytest
import trio
from hypercorn.trio import tcp_server

from engine.http import direct_body
from engine.store.blobs import local as blobs_module
from engine.store.blobs.local import PartWriter
from tests.conftest import create_dataset, error_of
from tests.http.uploads_helpers import MiB, initiate, sha

pytestmark = pytest.mark.local_blobs  # the engine's own /blobs/ route; S3 takes the bytes itself


@pytest.fixture(name="dataset")
async def _dataset(client, alice):
    return await create_dataset(client, alice.headers, name="Direct bodies")


@pytest.fixture(name="direct")
def _direct(monkeypatch):
    """Bytes read by the stream threads, per call of PartWriter.receive_from."""
    calls: list[int] = []
    started = trio.Event()
    original = PartWriter.receive_from

    async def receive_from(self, sock, count):
        started.set()
        got = await original(self, sock, count)
        calls.append(got)
        return got

    monkeypatch.setattr(PartWriter, "receive_from", receive_from)
    calls_started = (calls, started)
    return calls_started


def _put_head(url: str, length: int) -> bytes:
    u = urlsplit(url)
    return f"PUT {u.path}?{u.query} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Length: {length}\r\n\r\n".encode()


class _Replies:
    """HTTP/1.1 responses read off a raw client socket with h11."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def next(self, method: bytes = b"PUT") -> tuple[int, bytes]:
        self.conn.send(h11.Request(method=method, target="/", headers=[("host", "x"), ("content-length", "0")]))
        self.conn.send(h11.EndOfMessage())  # only to move h11's client side along
        status, body = 0, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.conn.start_next_cycle()
                return status, body


async def _initiate(client, alice, dataset, data: bytes) -> dict:
    r = await initiate(client, alice.headers, dataset["dataset_id"], data, checksum_sha256=sha(data))
    assert r.status_code == 201, r.text
    up = r.json()["data"]
    assert up["upload_strategy"] == "single_part"
    return up  # type: ignore[no-any-return]


async def _confirm_and_download(client, alice, up: dict, data: bytes) -> None:
    r = await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=alice.headers)
    assert r.status_code == 200, r.text  # the engine checked size and SHA-256
    r = await client.get(f"/v1/objects/{up['object_id']}/download-url", headers=alice.headers)
    assert r.status_code == 200, r.text
    got = await client.get(r.json()["data"]["download_url"])
    assert got.content == data


async def test_a_large_body_is_read_by_the_stream_threads_and_arrives_whole(client, alice, dataset, direct, cfg):
    calls, _ = direct
    data = os.urandom(12 * MiB + 12345)
    up = await _initiate(client, alice, dataset, data)
    r = await client.put(up["upload_url"], content=data)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["size_bytes"] == len(data)
    assert r.headers["ETag"] == f'"{sha(data)}"'
    # Most of it came straight from the socket; the last byte always comes h11's way.
    assert len(data) // 2 < sum(calls) <= len(data) - 1
    await _confirm_and_download(client, alice, up, data)
    assert not any((cfg.data_dir / "blobs" / "tmp").iterdir())


async def test_the_connection_goes_on_after_a_hand_over_even_with_the_next_request_sent_early(
        client, alice, dataset, direct, service):
    """Two PUTs and a GET on one connection, each sent right behind the body before it:
    the hand-over reads no byte past the body, and h11 ends each request itself."""
    calls, _ = direct
    first, second = os.urandom(3 * MiB + 1), os.urandom(2 * MiB + 777)
    up1 = await _initiate(client, alice, dataset, first)
    up2 = await _initiate(client, alice, dataset, second)
    url = urlsplit(service.url)
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    async with stream:
        health = f"GET /v1/health HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
        await stream.send_all(_put_head(up1["upload_url"], len(first)) + first + _put_head(up2["upload_url"], len(second)))
        await stream.send_all(second + health)
        replies = _Replies(stream)
        with trio.fail_after(30):
            status1, body1 = await replies.next()
            status2, body2 = await replies.next()
            status3, _ = await replies.next(b"GET")
    assert (status1, status2, status3) == (200, 200, 200), (body1, body2)
    assert b'"size_bytes":%d' % len(first) in body1 and b'"size_bytes":%d' % len(second) in body2
    assert len(calls) == 2 and all(0 < n < size for n, size in zip(calls, (len(first), len(second)), strict=True))
    await _confirm_and_download(client, alice, up1, first)
    await _confirm_and_download(client, alice, up2, second)


async def test_a_body_trickling_in_small_pieces_arrives_whole(client, alice, dataset, direct, service):
    """The stream thread finds the socket empty again and again: it goes back to the event
    loop to wait, and resumes where it stopped."""
    calls, _ = direct
    data = os.urandom(2 * MiB + 3)
    up = await _initiate(client, alice, dataset, data)
    url = urlsplit(service.url)
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    async with stream:
        await stream.send_all(_put_head(up["upload_url"], len(data)) + data[:300_000])
        for start in range(300_000, len(data), 64 * 1024 + 1):
            await stream.send_all(data[start:start + 64 * 1024 + 1])
            await trio.sleep(0.002)
        with trio.fail_after(30):
            status, body = await _Replies(stream).next()
    assert status == 200, body
    assert sum(calls) > MiB
    await _confirm_and_download(client, alice, up, data)


async def test_a_client_gone_during_a_hand_over_leaves_nothing_behind(client, alice, dataset, direct, cfg, service):
    calls, started = direct
    data = os.urandom(8 * MiB)
    up = await _initiate(client, alice, dataset, data)
    url = urlsplit(service.url)
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    await stream.send_all(_put_head(up["upload_url"], len(data)) + data[: 3 * MiB])
    with trio.fail_after(10):
        await started.wait()  # the stream threads are reading this body
    await stream.aclose()
    tmp = cfg.data_dir / "blobs" / "tmp"
    with trio.fail_after(10):
        while any(tmp.iterdir()) or not calls:
            await trio.sleep(0.05)
    assert 0 < calls[0] < len(data) - 1
    assert await service.services.store.list_parts(up["upload_id"]) == []
    assert not any((cfg.data_dir / "blobs" / "staging").rglob("*.*"))
    # The URL still works: the whole file again, this time to the end.
    r = await client.put(up["upload_url"], content=data)
    assert r.status_code == 200, r.text
    await _confirm_and_download(client, alice, up, data)


async def test_a_disk_failure_during_a_hand_over_is_an_error_and_stores_nothing(
        client, alice, dataset, direct, cfg, service, monkeypatch):
    calls, _ = direct
    original = PartWriter._write

    def failing(self, data):
        if self._written >= 2 * MiB:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, data)

    monkeypatch.setattr(PartWriter, "_write", failing)
    data = os.urandom(6 * MiB)
    up = await _initiate(client, alice, dataset, data)
    with trio.fail_after(30):
        r = await client.put(up["upload_url"], content=data)
    assert r.status_code == 500
    assert error_of(r)["code"] == "internal"
    assert calls and calls[0] < len(data) - 1  # the threads stopped reading at the failure
    assert not any((cfg.data_dir / "blobs" / "tmp").iterdir())
    assert await service.services.store.list_parts(up["upload_id"]) == []
    monkeypatch.setattr(PartWriter, "_write", original)
    with trio.fail_after(30):
        r = await client.put(up["upload_url"], content=data)  # the disk has room again
    assert r.status_code == 200, r.text
    await _confirm_and_download(client, alice, up, data)


async def test_a_small_body_takes_hypercorns_way(client, alice, dataset, direct):
    calls, _ = direct
    data = os.urandom(direct_body.MIN_HANDOVER_BYTES // 2)
    up = await _initiate(client, alice, dataset, data)
    r = await client.put(up["upload_url"], content=data)
    assert r.status_code == 200, r.text
    assert calls == []
    await _confirm_and_download(client, alice, up, data)


def test_install_takes_hypercorn_and_h11_as_they_are_and_refuses_others(monkeypatch):
    assert direct_body.install() is True  # the pinned Hypercorn and h11 are the ones it wraps
    assert tcp_server.TCPServer._read_data is direct_body._read_data
    assert direct_body.install() is True  # idempotent

    class NoCounter:
        def __init__(self, length: int) -> None:
            self.length = length

    monkeypatch.setattr(tcp_server.TCPServer, "_read_data", direct_body._ORIGINAL)
    monkeypatch.setattr(direct_body, "ContentLengthReader", NoCounter)
    assert direct_body.install() is False
    assert tcp_server.TCPServer._read_data is direct_body._ORIGINAL
    monkeypatch.undo()
    monkeypatch.setattr(tcp_server.TCPServer, "_read_data", direct_body._ORIGINAL)
    monkeypatch.setitem(direct_body.pins.WRAPPED, "hypercorn", "0.99.0")  # another Hypercorn release
    assert direct_body.install() is False
    assert tcp_server.TCPServer._read_data is direct_body._ORIGINAL


def test_each_stream_thread_reads_into_a_buffer_of_its_own():
    views: list[memoryview] = []

    def grab() -> None:
        views.append(blobs_module._receive_buffer())
        views.append(blobs_module._receive_buffer())

    threads = [__import__("threading").Thread(target=grab) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert views[0] is views[1] and views[2] is views[3] and views[0].obj is not views[2].obj
    assert len(views[0]) == blobs_module.RECEIVE_READ_BYTES


async def test_a_failure_of_the_write_before_the_hand_over_reaches_the_app_not_the_server(
        client, alice, dataset, direct, cfg, service, monkeypatch):
    """The body's first bytes come Hypercorn's way; if writing them fails (here: the file
    cannot be created), the app answers 500 and the server goes on serving, whether the
    app or a hand-over meets the failure first (tests/store/test_part_writer.py has the
    latter alone)."""
    calls, _ = direct
    original = PartWriter._write

    def failing(self, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(self.tmp))

    monkeypatch.setattr(PartWriter, "_write", failing)
    data = os.urandom(4 * MiB)
    up = await _initiate(client, alice, dataset, data)
    with trio.fail_after(30):
        r = await client.put(up["upload_url"], content=data)
    assert r.status_code == 500 and error_of(r)["code"] == "internal"
    assert sum(calls) == 0  # if the hand-over began, it read nothing
    assert not any((cfg.data_dir / "blobs" / "tmp").iterdir())
    monkeypatch.setattr(PartWriter, "_write", original)
    with trio.fail_after(30):
        assert (await client.get("/v1/health")).status_code == 200
        r = await client.put(up["upload_url"], content=data)
    assert r.status_code == 200, r.text
    await _confirm_and_download(client, alice, up, data)


class _NoSocket:
    """Stands in for the ``socket`` module in direct_body: the dup cannot be made a socket."""

    def __init__(self) -> None:
        self.filenos: list[int] = []

    def socket(self, fileno: int) -> None:
        self.filenos.append(fileno)
        raise OSError(errno.ENOTSOCK, "Socket operation on non-socket")


def test_a_dup_that_cannot_be_made_a_socket_is_closed_again(monkeypatch):
    no_socket = _NoSocket()
    monkeypatch.setattr(direct_body, "socket", no_socket)
    a, b = __import__("socket").socketpair()
    with a, b:
        assert direct_body._own_socket(a.fileno()) is None
        (dup,) = no_socket.filenos
        assert dup != a.fileno()
        with pytest.raises(OSError) as closed:
            os.fstat(dup)
        assert closed.value.errno == errno.EBADF


async def test_without_a_socket_of_its_own_the_body_takes_hypercorns_way(
        client, alice, dataset, direct, cfg, monkeypatch):
    calls, _ = direct
    no_socket = _NoSocket()
    monkeypatch.setattr(direct_body, "socket", no_socket)
    data = os.urandom(4 * MiB + 5)
    up = await _initiate(client, alice, dataset, data)
    with trio.fail_after(30):
        r = await client.put(up["upload_url"], content=data)
    assert r.status_code == 200, r.text
    assert no_socket.filenos and calls == []  # a hand-over was tried, and none took place
    await _confirm_and_download(client, alice, up, data)
    assert not any((cfg.data_dir / "blobs" / "tmp").iterdir())
