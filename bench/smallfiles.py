"""Many small files into one dataset: ours (initiate + PUT + confirm) against tus (POST + PATCH).

The everyday shape of "high upload volume" is not one big file but thousands of small ones
(invoices, receipts, scans: 10-500 KiB) going into one dataset. Here ``count`` slices of one
random file, ``size`` bytes each, are uploaded ``concurrency`` at a time, every client on its
own keep-alive connection (as a real uploader keeps its connections), to

* **ours**: ``POST /v1/datasets/{id}/objects/upload`` (SHA-256 declared) + the presigned
  ``PUT`` + ``POST /v1/objects/{id}/confirm``, all into one dataset (or spread over several,
  upload *k* to dataset *k* mod N, for the spread case);
* **tus**: creation ``POST /files`` + one ``PATCH`` with the whole body.

Bodies are read from the page cache with ``os.pread`` (tens of µs for 100 KiB), the same for
both servers; every request goes through :class:`bench.client.Conn`, whose cost per request
is a fraction of either server's. Errors are counted, never retried.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import trio

from bench.client import ApiError, Conn
from bench.drive import describe, percentile
from bench.harness import tree_cpu_seconds

TUS = {"Tus-Resumable": "1.0.0"}
_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*(B|KiB|MiB)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kib": 1024, "mib": 1024 * 1024}


def parse_files(spec: str) -> list[tuple[int, int]]:
    """``"2000x100KiB,5000x10KiB,300x4096"`` → ``[(2000, 102400), (5000, 10240), (300, 4096)]``
    (sizes in bytes unless ``KiB`` or ``MiB`` follows)."""
    out = []
    for part in spec.split(","):
        if not part.strip():
            continue
        m = _SIZE.match(part)
        if m is None:
            raise ValueError(f"{part!r}: expected COUNTxSIZE, e.g. 2000x100KiB or 500x4096")
        out.append((int(m.group(1)), int(m.group(2)) * _UNITS[(m.group(3) or "b").lower()]))
    return out


def size_label(size: int) -> str:
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


@dataclass
class Result:
    """One contender's pass over the files."""

    files: int
    size: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    server_cpu: float = float("nan")  # cores busy on average over the pass
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.files / self.elapsed if self.elapsed else 0.0

    @property
    def mib_s(self) -> float:
        return self.rate * self.size / (1024 * 1024)

    def pct_ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


@dataclass(frozen=True)
class Files:
    """``count`` slices of ``size`` bytes of ``path`` (and their SHA-256, for ours)."""

    path: Path
    size: int
    offsets: list[int]
    sha256: list[str]

    def body(self, fd: int, i: int) -> bytes:
        return os.pread(fd, self.size, self.offsets[i])


async def _pass(files: Files, concurrency: int, base: str, server_pids: list[int],
                one: Callable[[Conn, int, bytes], Awaitable[None]]) -> Result:
    result = Result(len(files.offsets), files.size)
    conns = [Conn(base) for _ in range(concurrency)]
    fd = os.open(files.path, os.O_RDONLY)
    next_job = 0

    async def worker(w: int) -> None:
        nonlocal next_job
        conn = conns[w]
        while next_job < len(files.offsets):
            i = next_job
            next_job += 1
            t0 = time.perf_counter()
            try:
                await one(conn, i, files.body(fd, i))
            except (ApiError, OSError, KeyError) as exc:
                result.errors[describe(exc)] += 1
                conn.close()
            else:
                result.latencies.append(time.perf_counter() - t0)

    def server_cpu() -> float:
        return sum(tree_cpu_seconds(pid) for pid in server_pids)

    try:
        cpu0, srv0, t0 = time.process_time(), server_cpu(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for w in range(concurrency):
                nursery.start_soon(worker, w)
        result.elapsed = time.perf_counter() - t0
        result.client_cpu = (time.process_time() - cpu0) / result.elapsed
        result.server_cpu = (server_cpu() - srv0) / result.elapsed if server_pids else math.nan
    finally:
        os.close(fd)
        for conn in conns:
            conn.close()
    return result


async def ours(files: Files, concurrency: int, base: str, token: str, datasets: list[str],
               server_pids: list[int]) -> tuple[Result, list[str]]:
    """Every file through initiate + PUT + confirm; returns the result and the object ids."""
    confirmed: list[str] = []
    elsewhere: dict[int, Conn] = {}  # each client's keep-alive connection to a blob server that is not the engine (S3)

    async def one(conn: Conn, i: int, body: bytes) -> None:
        dataset = datasets[i % len(datasets)]
        up = (await conn.request("POST", f"/v1/datasets/{dataset}/objects/upload", token=token, json={
            "filename": f"invoice-{i:06d}.pdf", "content_type": "application/pdf", "size_bytes": len(body),
            "checksum_sha256": files.sha256[i]})).data(201)
        url = up["upload_url"]
        target = conn
        if not url.startswith(base + "/"):
            u = urlsplit(url)
            target = elsewhere.setdefault(id(conn), Conn(f"{u.scheme}://{u.netloc}"))
        reply = await target.request("PUT", url, body=body)
        if reply.status != 200:
            reply.data(200)  # raises with the error's code
        (await conn.request("POST", f"/v1/objects/{up['object_id']}/confirm", json={}, token=token)).data(200)
        confirmed.append(up["object_id"])

    try:
        return await _pass(files, concurrency, base, server_pids, one), confirmed
    finally:
        for c in elsewhere.values():
            c.close()


async def tus(files: Files, concurrency: int, base: str, server_pids: list[int]) -> Result:
    """Every file through tus creation + one PATCH with the whole body."""

    async def one(conn: Conn, i: int, body: bytes) -> None:
        created = await conn.request("POST", "/files", headers={**TUS, "Upload-Length": str(len(body))})
        if created.status != 201:
            raise ApiError(created.status, "tus_create")
        done = await conn.request("PATCH", created.headers["location"], body=body, headers={
            **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        if done.status != 204 or int(done.headers.get("upload-offset", -1)) != len(body):
            raise ApiError(done.status, "tus_patch")

    return await _pass(files, concurrency, base, server_pids, one)

