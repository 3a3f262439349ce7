"""The local store's PartWriter: chunks hashed and written on a worker thread while the
next arrives, a failure surfacing at the next call, and an abort that waits for the disk."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
import trio

from engine.store.blobs import local as blobs_module
from engine.store.blobs.local import PartWriter, start_writeback

MiB = 1024 * 1024


async def test_chunks_are_written_in_order_while_the_next_arrives(tmp_path, monkeypatch):
    monkeypatch.setattr(blobs_module, "WRITEBACK_BYTES", 3 * MiB)
    writebacks: list[tuple[int, int]] = []
    real = blobs_module.start_writeback
    monkeypatch.setattr(blobs_module, "start_writeback", lambda fd, off, n: (writebacks.append((off, n)), real(fd, off, n)))
    writer = PartWriter(tmp_path / "t")
    chunks = [os.urandom(MiB + i) for i in range(8)]
    in_thread = []
    gate = threading.Event()
    original = writer._write

    def slow_write(data: bytes) -> None:
        in_thread.append(threading.current_thread() is not threading.main_thread())
        gate.wait(5)  # the disk is slow: write() must not wait for this chunk
        original(data)

    monkeypatch.setattr(writer, "_write", slow_write)
    await writer.write(chunks[0])  # handed over; returns without waiting for it
    assert writer._inflight is not None and not writer._inflight.done.is_set()
    gate.set()
    for chunk in chunks[1:]:
        await writer.write(chunk)
    await writer.commit(tmp_path / "final")
    data = (tmp_path / "final").read_bytes()
    assert data == b"".join(chunks) and writer.size == len(data)
    assert writer.sha256 == hashlib.sha256(data).hexdigest()
    assert all(in_thread) and len(in_thread) == 8
    # writeback started every ~3 MiB, over consecutive ranges from the start
    assert writebacks and writebacks[0][0] == 0
    assert all(a[0] + a[1] == b[0] for a, b in zip(writebacks, writebacks[1:], strict=False))


async def test_the_file_is_opened_by_the_first_write_not_before(tmp_path):
    writer = PartWriter(tmp_path / "t")
    assert not (tmp_path / "t").exists()  # opening it would cost a trip to a thread of its own
    await writer.abort()  # nothing written, nothing to remove
    assert not (tmp_path / "t").exists()

    empty = PartWriter(tmp_path / "e")
    await empty.commit(tmp_path / "sub" / "empty")  # an empty body still commits a file
    assert (tmp_path / "sub" / "empty").read_bytes() == b"" and empty.size == 0
    assert empty.sha256 == hashlib.sha256(b"").hexdigest()

    missing = PartWriter(tmp_path / "no-such-dir" / "t")
    await missing.write(b"x")  # the open fails on the thread, and surfaces at the next call
    with pytest.raises(FileNotFoundError):
        await missing.commit(tmp_path / "final")
    await missing.abort()


async def test_a_failed_chunk_is_raised_by_the_next_call(tmp_path, monkeypatch):
    writer = PartWriter(tmp_path / "t")

    def broken(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "_write", broken)
    await writer.write(b"x" * 10)  # fails in the thread, after write() returned
    with pytest.raises(OSError, match="No space"):
        await writer.commit(tmp_path / "final")
    await writer.abort()
    assert not (tmp_path / "final").exists() and not (tmp_path / "t").exists()


async def test_abort_waits_for_the_chunk_in_the_thread_before_closing_the_file(tmp_path, monkeypatch):
    writer = PartWriter(tmp_path / "t")
    gate = threading.Event()
    finished = []
    original = writer._write

    def slow_write(data: bytes) -> None:
        gate.wait(5)
        original(data)
        finished.append(True)

    monkeypatch.setattr(writer, "_write", slow_write)
    await writer.write(b"y" * MiB)
    with trio.move_on_after(0.05):
        await writer.write(b"z")  # cancelled while waiting for the chunk before
    trio.lowlevel.current_trio_token().run_sync_soon(gate.set)
    await writer.abort()  # must not close the file under the thread
    assert finished == [True] and not (tmp_path / "t").exists()


def test_start_writeback_is_harmless_and_hints_only(tmp_path):
    path = tmp_path / "f"
    with open(path, "wb") as fh:
        fh.write(b"a" * MiB)
        fh.flush()
        start_writeback(fh.fileno(), 0, MiB)  # starts the disk write; no error, nothing changes
    assert path.read_bytes() == b"a" * MiB


async def test_every_upload_shares_the_few_stream_threads(tmp_path):
    """Many concurrent writers: every chunk is hashed and written on one of the pool's
    threads (not a thread per job), each writer's bytes in order."""
    seen: set[str] = set()
    writers = [PartWriter(tmp_path / f"t{i}") for i in range(6)]
    for w in writers:
        original = w._write

        def spy(data: bytes, original=original) -> None:
            seen.add(threading.current_thread().name)
            original(data)

        w._write = spy  # type: ignore[method-assign]
    chunks = {i: [os.urandom(64 * 1024 + j) for j in range(5)] for i in range(6)}

    async def feed(i: int) -> None:
        for chunk in chunks[i]:
            await writers[i].write(chunk)
        await writers[i].commit(tmp_path / f"final{i}")

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(feed, i)
    for i in range(6):
        assert (tmp_path / f"final{i}").read_bytes() == b"".join(chunks[i])
        assert writers[i].sha256 == hashlib.sha256(b"".join(chunks[i])).hexdigest()
    assert seen and seen <= {f"ipto-stream-{n}" for n in range(blobs_module.STREAM_THREADS.size)}


def test_a_stream_thread_outlives_a_finished_run_and_a_failed_delivery():
    """A result whose Trio run has ended, or whose delivery raises, costs the pool no thread."""
    pool = blobs_module._StreamThreads(1)
    done = threading.Event()

    def finished_run(_result: object) -> None:
        raise trio.RunFinishedError("the run is over")

    def broken(_result: object) -> None:
        raise RuntimeError("deliver failed")

    results: list[object] = []
    pool.submit(lambda: 1, finished_run)
    pool.submit(lambda: 2, broken)
    pool.submit(lambda: 3, lambda result: (results.append(result.unwrap()), done.set()))
    assert done.wait(5) and results == [3]
    assert len(pool._threads) == 1 and pool._threads[0].is_alive()


async def test_reading_from_a_socket_hashes_and_writes_in_order_and_stops_at_the_count(tmp_path, monkeypatch):
    """receive_from: the bytes after those written, read on a stream thread, never one past
    ``count``; the socket running dry sends it back to the loop to wait, not away."""
    monkeypatch.setattr(blobs_module, "RECEIVE_READ_BYTES", 64 * 1024)  # several reads per job
    monkeypatch.setattr(blobs_module, "RECEIVE_JOB_BYTES", 200 * 1024)  # and several jobs
    head, body, after = os.urandom(1000), os.urandom(3 * MiB + 5), b"NEXT REQUEST"
    a, b = trio.socket.socketpair()
    with a, b:
        writer = PartWriter(tmp_path / "t")
        await writer.write(head)

        sender = trio.SocketStream(a)

        async def send() -> None:
            for start in range(0, len(body), 256 * 1024):
                await sender.send_all(body[start:start + 256 * 1024])
                await trio.sleep(0.01)  # the reader finds the socket empty between pieces
            await sender.send_all(after)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            got = await writer.receive_from(b._sock, len(body))  # the stdlib socket, as the hand-over gives
        assert got == len(body) and writer.size == len(head) + len(body)
        assert await b.recv(100) == after  # nothing past the count was read
        await writer.commit(tmp_path / "final")
    assert (tmp_path / "final").read_bytes() == head + body
    assert writer.sha256 == hashlib.sha256(head + body).hexdigest()


async def test_a_failed_write_before_a_socket_read_is_kept_for_the_writers_next_call(tmp_path, monkeypatch):
    """The caller of receive_from is the connection's reader, not the app: a failure of the
    write in flight must not be raised there, but by the app's next call."""
    writer = PartWriter(tmp_path / "t")

    def failing(data: bytes | memoryview) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "_write", failing)
    await writer.write(b"x" * 1000)  # fails on the thread, unseen yet
    a, b = trio.socket.socketpair()
    with a, b:
        await trio.SocketStream(a).send_all(b"y" * 5000)
        assert await writer.receive_from(b._sock, 5000) == 0  # reads nothing, raises nothing
        assert await b.recv(10000) == b"y" * 5000  # the bytes are still in the socket
    with pytest.raises(OSError, match="No space"):
        await writer.write(b"z")
    await writer.abort()
    assert not (tmp_path / "t").exists()


async def test_a_failed_write_during_a_socket_read_stops_the_reading(tmp_path, monkeypatch):
    writer = PartWriter(tmp_path / "t")
    original = writer._write
    monkeypatch.setattr(blobs_module, "RECEIVE_READ_BYTES", 4096)

    def failing(data: bytes | memoryview) -> None:
        if writer._written >= 8192:
            raise OSError(28, "No space left on device")
        original(data)

    monkeypatch.setattr(writer, "_write", failing)
    a, b = trio.socket.socketpair()
    with a, b:
        await trio.SocketStream(a).send_all(b"y" * 50000)
        got = await writer.receive_from(b._sock, 50000)
    assert got == 3 * 4096  # the third read failed to be written, and was the last
    with pytest.raises(OSError, match="No space"):
        await writer.commit(tmp_path / "final")
    await writer.abort()
    assert not (tmp_path / "t").exists() and not (tmp_path / "final").exists()
