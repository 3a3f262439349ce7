"""Server CPU per small-upload request type, on a quiet or busy machine alike.

``python -m bench.cpuprobe [--files 600] [--size 102400] [--concurrency 32] [--workers 1]``
starts an engine (SQLite + local blobs; ``--store postgres`` too, via bench.stores; ``--s3``:
blobs on a SeaweedFS S3 server, the PUTs going to it, not the engine), signs up,
creates one dataset, then runs three phases over the same files, each ``concurrency`` at a
time on keep-alive connections: every initiate, then every PUT, then every confirm; and
last the whole flow (initiate + PUT + confirm per file) on fresh files. It prints the
engine's CPU (all its processes and threads, from /proc) per request of each phase and per
whole upload. CPU seconds per request do not depend much on other load on the machine,
so this is the measure to develop against; rates are not (use ``bench upload`` quietly).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import trio

from bench import harness, stores
from bench.client import Api, Conn


async def _phase(n: int, concurrency: int, base: str, one) -> float:  # type: ignore[no-untyped-def]
    conns = [Conn(base) for _ in range(concurrency)]
    next_job = 0

    async def worker(w: int) -> None:
        nonlocal next_job
        while next_job < n:
            i = next_job
            next_job += 1
            await one(conns[w], i)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for w in range(concurrency):
            nursery.start_soon(worker, w)
    for c in conns:
        c.close()
    return time.perf_counter() - t0


def _split(pid: int) -> dict[str, tuple[float, float]]:
    """User and system CPU seconds of the engine's main threads and of all its other threads."""
    out: dict[str, list[float]] = {"main": [0.0, 0.0], "threads": [0.0, 0.0]}
    for p in harness.process_tree(pid):
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kind = "main" if task.name == str(p) else "threads"
            out[kind][0] += int(fields[11]) / harness.CLK_TCK
            out[kind][1] += int(fields[12]) / harness.CLK_TCK
    return {k: (v[0], v[1]) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--size", type=int, default=100 * 1024)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--work", default="/tmp/cpuprobe")
    parser.add_argument("--pyspy", default="", help="record a py-spy profile of each phase to PREFIX-PHASE.raw")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--s3", action="store_true", help="blobs on a SeaweedFS S3 server started here")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = args.files
    bodies = [os.urandom(args.size) for _ in range(2 * n)]
    shas = [hashlib.sha256(b).hexdigest() for b in bodies]
    env = {"IPTO_UPLOADS_MULTIPART_THRESHOLD_BYTES": str(5 * 1024**3)}
    if args.workers is not None:
        env["IPTO_HTTP_WORKERS"] = str(args.workers)
    with stores.open_stores(args.store, work) as st, contextlib.ExitStack() as stack:
        if args.s3:
            from bench.upload import _seaweedfs

            env |= _seaweedfs(stack, work)
        store = st.names[0]
        with harness.engine(work / f"data-{store}-{time.time_ns()}", env={**env, **st.env(store)}) as eng:

            async def setup() -> tuple[str, str]:
                async with Api(eng.base) as api:
                    token = await api.signup(f"probe{time.time_ns()}@bench.example")
                    return token, (await api.datasets(1, "probe"))[0]

            token, dataset = trio.run(setup)
            ups: dict[int, dict] = {}

            async def initiate(conn: Conn, i: int) -> None:
                ups[i] = (
                    await conn.request(
                        "POST",
                        f"/v1/datasets/{dataset}/objects/upload",
                        token=token,
                        json={
                            "filename": f"invoice-{i:06d}.pdf",
                            "content_type": "application/pdf",
                            "size_bytes": args.size,
                            "checksum_sha256": shas[i],
                        },
                    )
                ).data(201)

            elsewhere: dict[int, Conn] = {}  # S3: each client's connection to it

            async def put(conn: Conn, i: int) -> None:
                url = ups[i]["upload_url"]
                target = conn
                if not url.startswith(eng.base + "/"):
                    u = urlsplit(url)
                    target = elsewhere.setdefault(id(conn), Conn(f"{u.scheme}://{u.netloc}"))
                reply = await target.request("PUT", url, body=bodies[i])
                if reply.status != 200:
                    reply.data(200)

            async def confirm(conn: Conn, i: int) -> None:
                (await conn.request("POST", f"/v1/objects/{ups[i]['object_id']}/confirm", json={}, token=token)).data(200)

            async def whole(conn: Conn, i: int) -> None:
                i += n
                await initiate(conn, i)
                await put(conn, i)
                await confirm(conn, i)

            def measure(label: str, fn, offset: int = 0) -> None:  # type: ignore[no-untyped-def]
                spy = None
                if args.pyspy:
                    spy = subprocess.Popen(
                        [
                            "py-spy",
                            "record",
                            "--nonblocking",
                            "-r",
                            "250",
                            "-f",
                            "raw",
                            "-o",
                            f"{args.pyspy}-{label}.raw",
                            "-p",
                            str(eng.pid),
                            "--subprocesses",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    time.sleep(1.0)
                cpu0, split0 = eng.cpu(), _split(eng.pid)

                async def phase() -> float:
                    try:
                        return await _phase(n, args.concurrency, eng.base, fn)
                    finally:
                        for c in elsewhere.values():
                            c.close()
                        elsewhere.clear()

                elapsed = trio.run(phase)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait()
                cpu = eng.cpu() - cpu0
                split = {
                    k: (v[0] - split0.get(k, (0, 0))[0], v[1] - split0.get(k, (0, 0))[1]) for k, v in _split(eng.pid).items()
                }
                parts = "  ".join(f"{k} u{u / n * 1000:.2f}+s{s / n * 1000:.2f}" for k, (u, s) in sorted(split.items()))
                print(
                    f"{label:10s} {cpu / n * 1000:7.2f} ms CPU/req  {n / elapsed:7.1f} req/s  {cpu / elapsed:4.2f} cores  [{parts}]",
                    flush=True,
                )

            for r in range(args.rounds):
                if r:
                    bodies[:] = [os.urandom(args.size) for _ in range(2 * n)]
                    shas[:] = [hashlib.sha256(b).hexdigest() for b in bodies]
                measure("initiate", initiate)
                measure("put", put)
                measure("confirm", confirm)
                measure("whole", whole)
            print(f"peak RSS {eng.peak_rss_mib():.0f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
