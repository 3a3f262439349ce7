"""Bulk operations: initiating and confirming many small objects by batches against one by one.

    python -m bench bulk [--count 10000] [--batch 500] [--concurrency 16] [--runs 1] [--size 1024]

Starts the engine (``IPTO_LOG_LEVEL=warning``, SQLite + local blobs) and, per run, moves
``--count`` objects of ``--size`` bytes into one dataset twice, each time in three phases
measured apart:

* **one by one** (the baseline): ``--concurrency`` closed-loop clients, each on its own
  keep-alive connection, ``POST /v1/datasets/{id}/objects/upload`` per object; then every
  object's presigned ``PUT``; then ``POST /v1/objects/{id}/confirm`` per object;
* **by batches**: ``POST /v1/datasets/{id}/objects/upload/batch`` of ``--batch`` files, one
  batch at a time on one connection; the same PUTs; then ``POST /v1/objects/confirm/batch``
  of ``--batch`` ids, one at a time.

The figure the issue asks for is initiate + confirm (the control plane, where batching
applies): objects per second over the two phases' time together, and the ratio batches ÷
one by one of the same run (target ≥ 5×). The PUT phase moves the same bytes the same way
in both modes (one request per object: there is no batch PUT) and is reported beside it,
with the whole (initiate + PUT + confirm) ratio, so nothing is hidden. What it leaves out:
PostgreSQL and S3 (the embedded store only), several datasets, concurrent batches.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from bench import harness
from bench.client import Api, ApiError, Conn
from bench.drive import describe
from bench.report import Row, Section, median


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--count", type=int, default=2000 if quick else 10_000, help="objects per mode and run")
    parser.add_argument("--batch", type=int, default=500, help="items per batch request (1-1000)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients of the one-by-one mode and of the PUTs")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--size", type=int, default=1024, help="bytes per object")


class Timing:
    """Seconds per phase and errors of one mode's pass."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.errors: Counter[str] = Counter()

    def rate(self, count: int, *phases: str) -> float:
        total = sum(self.seconds[p] for p in phases)
        return count / total if total else 0.0


async def _workers(n: int, items: list[Any], work: Any, base: str, errors: Counter[str]) -> float:
    """``work(conn, item)`` for every item from ``n`` clients with their own connections; seconds taken."""
    conns = [Conn(base) for _ in range(n)]
    todo = iter(items)

    async def worker(conn: Conn) -> None:
        for item in todo:
            try:
                await work(conn, item)
            except (ApiError, OSError, KeyError) as exc:
                errors[describe(exc)] += 1
                conn.close()

    t0 = time.perf_counter()
    try:
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(worker, conn)
    finally:
        for conn in conns:
            conn.close()
    return time.perf_counter() - t0


def _file(i: int, size: int, sha: str) -> dict[str, Any]:
    return {"filename": f"receipt-{i:06d}.txt", "content_type": "text/plain", "size_bytes": size, "checksum_sha256": sha}


async def _put_all(args: argparse.Namespace, base: str, uploads: list[dict[str, Any]], body: bytes, t: Timing) -> None:
    async def put(conn: Conn, up: dict[str, Any]) -> None:
        reply = await conn.request("PUT", up["upload_url"], body=body)
        if reply.status != 200:
            reply.data(200)

    t.seconds["put"] = await _workers(args.concurrency, uploads, put, base, t.errors)


async def one_by_one(args: argparse.Namespace, base: str, token: str, dataset: str, body: bytes, sha: str) -> Timing:
    t = Timing()
    uploads: list[dict[str, Any]] = []

    async def initiate(conn: Conn, i: int) -> None:
        uploads.append((await conn.request("POST", f"/v1/datasets/{dataset}/objects/upload", token=token,
                                           json=_file(i, len(body), sha))).data(201))

    async def confirm(conn: Conn, up: dict[str, Any]) -> None:
        (await conn.request("POST", f"/v1/objects/{up['object_id']}/confirm", json={}, token=token)).data(200)

    t.seconds["initiate"] = await _workers(args.concurrency, list(range(args.count)), initiate, base, t.errors)
    await _put_all(args, base, uploads, body, t)
    t.seconds["confirm"] = await _workers(args.concurrency, uploads, confirm, base, t.errors)
    return t


async def batched(args: argparse.Namespace, base: str, token: str, dataset: str, body: bytes, sha: str) -> Timing:
    t = Timing()
    uploads: list[dict[str, Any]] = []
    chunks = [list(range(i, min(i + args.batch, args.count))) for i in range(0, args.count, args.batch)]

    async def initiate(conn: Conn, chunk: list[int]) -> None:
        files = [_file(i, len(body), sha) for i in chunk]
        results = (await conn.request("POST", f"/v1/datasets/{dataset}/objects/upload/batch", token=token,
                                      json={"files": files})).data(200)["results"]
        for r in results:
            if r["ok"]:
                uploads.append(r["upload"])
            else:
                t.errors[f"item {r['error']['code']}"] += 1

    async def confirm(conn: Conn, ups: list[dict[str, Any]]) -> None:
        results = (await conn.request("POST", "/v1/objects/confirm/batch", token=token,
                                      json={"object_ids": [u["object_id"] for u in ups]})).data(200)["results"]
        for r in results:
            if not r["ok"]:
                t.errors[f"item {r['error']['code']}"] += 1

    t.seconds["initiate"] = await _workers(1, chunks, initiate, base, t.errors)
    await _put_all(args, base, uploads, body, t)
    t.seconds["confirm"] = await _workers(1, [uploads[i:i + args.batch] for i in range(0, len(uploads), args.batch)],
                                          confirm, base, t.errors)
    return t


async def _measure(args: argparse.Namespace, engine: harness.Server, runs: list[tuple[Timing, Timing]]) -> None:
    body = os.urandom(args.size)
    sha = hashlib.sha256(body).hexdigest()
    async with Api(engine.base, connections=4) as setup:
        token = await setup.signup("bulk@bench.example")
    for run in range(args.runs):
        async with Api(engine.base, token=token, connections=4) as setup:
            single_ds, batch_ds = await setup.datasets(2, f"bulk-run{run}")
        single = await one_by_one(args, engine.base, token, single_ds, body, sha)
        batch = await batched(args, engine.base, token, batch_ds, body, sha)
        runs.append((single, batch))
        for name, tm in (("one by one", single), (f"batches of {args.batch}", batch)):
            errs = f", errors {dict(tm.errors)}" if tm.errors else ""
            print(f"  run {run + 1} {name:<16} initiate {tm.seconds['initiate']:6.2f} s  put {tm.seconds['put']:6.2f} s  "
                  f"confirm {tm.seconds['confirm']:6.2f} s  initiate+confirm {tm.rate(args.count, 'initiate', 'confirm'):8,.0f}"
                  f" objects/s{errs}", flush=True)
        print(f"  run {run + 1} ratio batches ÷ one by one (initiate + confirm): "
              f"{batch.rate(args.count, 'initiate', 'confirm') / single.rate(args.count, 'initiate', 'confirm'):.2f}×",
              flush=True)


def _errors(timings: list[Timing]) -> str:
    total: Counter[str] = Counter()
    for tm in timings:
        total.update(tm.errors)
    return "" if not total else "errors " + ", ".join(f"{k}×{v}" for k, v in sorted(total.items()))


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    if not 1 <= args.batch <= 1000:
        raise SystemExit("--batch must be 1 to 1000")
    print(f"bulk: {args.count:,} objects of {args.size} B into one dataset, batches of {args.batch}, one by one at "
          f"{args.concurrency} clients, {args.runs} run(s)", flush=True)
    runs: list[tuple[Timing, Timing]] = []
    with harness.engine(work / "bulk-data") as engine:
        trio.run(_measure, args, engine, runs)
        rss = engine.peak_rss_mib()
    n = args.count
    singles, batches = [s for s, _ in runs], [b for _, b in runs]

    def rates(ts: list[Timing], *phases: str) -> list[float]:
        return [t.rate(n, *phases) for t in ts]

    rows = [
        Row("single_ic", f"one by one, {args.concurrency} clients: initiate + confirm", "objects/s",
            rates(singles, "initiate", "confirm"), is_baseline=True, short="one by one", note=_errors(singles)),
        Row("batch_ic", f"batches of {args.batch}, one at a time: initiate + confirm", "objects/s",
            rates(batches, "initiate", "confirm"), baseline="single_ic", note="target ≥ 5× " + _errors(batches)),
        Row("single_i", "  one by one: initiate", "objects/s", rates(singles, "initiate"), chart=False),
        Row("batch_i", "  batches: initiate", "objects/s", rates(batches, "initiate"), base_values=rates(singles, "initiate"),
            chart=False),
        Row("single_c", "  one by one: confirm", "objects/s", rates(singles, "confirm"), chart=False),
        Row("batch_c", "  batches: confirm", "objects/s", rates(batches, "confirm"), base_values=rates(singles, "confirm"),
            chart=False),
        Row("single_put", f"PUT of every object, {args.concurrency} clients (one by one's pass)", "objects/s",
            rates(singles, "put"), chart=False, note="the same in both modes: no batch PUT"),
        Row("batch_put", "PUT of every object (batches' pass)", "objects/s", rates(batches, "put"),
            base_values=rates(singles, "put"), chart=False),
        Row("single_all", "one by one: initiate + PUT + confirm", "objects/s", rates(singles, "initiate", "put", "confirm"),
            chart=False),
        Row("batch_all", "batches: initiate + PUT + confirm", "objects/s", rates(batches, "initiate", "put", "confirm"),
            base_values=rates(singles, "initiate", "put", "confirm"), chart=False, note="whole cycle, PUTs included"),
    ]
    section = Section("bulk", f"Bulk: {n:,} small objects into one dataset, batches of {args.batch} vs one by one", rows)
    section.baselines = [
        f"one by one = {args.concurrency} closed-loop clients on their own keep-alive connections sending the single "
        "initiate and confirm requests, same engine, same run, its own dataset.",
    ]
    ratio = median([b / s for b, s in zip(rates(batches, "initiate", "confirm"), rates(singles, "initiate", "confirm"), strict=True)])
    section.notes = [
        f"batches ÷ one by one, initiate + confirm: {ratio:.2f}× (median of the runs' ratios).",
        "PUTs are timed apart: both modes send one PUT per object the same way. Not measured: PostgreSQL/S3, "
        "several datasets, batches in parallel.",
        f"engine peak RSS {rss:.0f} MiB.",
    ]
    section.meta = {"count": n, "batch": args.batch, "concurrency": args.concurrency, "runs": args.runs, "size": args.size,
                    "seconds": [{"single": s.seconds, "batch": b.seconds} for s, b in runs], "engine_peak_rss_mib": rss}
    return [section]
