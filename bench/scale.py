"""Scale: the concurrency ladder of whole 1 MiB uploads into one dataset (and spread over 100).

    python -m bench scale [--ladder 1,10,100,1000] [--datasets 1] [--spread 100] [--per-client 2] [--min-uploads 200]
                          [--runs 2]

For each rung, a fresh engine (own data dir, ``IPTO_LOG_LEVEL=warning``) gets a tenant and
``--datasets`` datasets (one by default: every upload into the same dataset, as a provider
loading a corpus does); then ``c`` concurrent clients, each on its own keep-alive
connection, upload ``max(--min-uploads, c x --per-client)`` objects of 1 MiB: initiate
(upload *k* goes to dataset *k* mod N) + presigned PUT + confirm with the declared SHA-256.
Each rung runs again on another fresh engine with the uploads spread over ``--spread``
datasets (``0``: not measured), and the ratio one dataset ÷ spread is reported.
All clients start at once: at 1,000 they open 1,000 connections in the same instant,
against the engine's listen backlog (``http.backlog``, 1024 by default; Hypercorn's own
is 100). Reported per rung: uploads/s and MiB/s, p50/p99 of a whole upload,
errors by status (never retried), and the server's peak RSS (VmHWM of the fresh process)
next to its RSS when idle with the datasets made.

Baseline, same run: the same number of 1 MiB files (at most 200) hashed, written and
fsynced one after another by this process — what a verifying store must do per object,
with no HTTP, store or concurrency.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import trio

from bench import harness
from bench.client import Api, ApiError, Conn
from bench.drive import Phase, drive
from bench.report import Row, Section, median
from engine.config import load_config

MiB = harness.MiB
OP_TIMEOUT = 300.0


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--ladder", default="1,10,100,1000", help="concurrent uploads per rung, comma-separated")
    parser.add_argument("--datasets", type=int, default=1, help="datasets the uploads go to (1: all into one)")
    parser.add_argument("--spread", type=int, default=100, help="datasets of the spread case (0: not measured)")
    parser.add_argument("--per-client", type=int, default=1 if quick else 2, help="uploads per client (at least)")
    parser.add_argument("--min-uploads", type=int, default=100 if quick else 200, help="uploads per rung (at least)")
    parser.add_argument("--object-kib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=2)


def physical(directory: Path, body: bytes, count: int) -> float:
    """Objects/s of SHA-256 + write + fsync of ``count`` files of ``body``, one at a time."""
    directory.mkdir(parents=True, exist_ok=True)
    os.sync()
    start = time.perf_counter()
    for i in range(count):
        hashlib.sha256(body).hexdigest()
        with open(directory / f"{i}.bin", "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
    elapsed = time.perf_counter() - start
    for i in range(count):
        (directory / f"{i}.bin").unlink()
    return count / elapsed


async def _setup(base: str, datasets: int) -> tuple[str, list[str]]:
    async with Api(base) as api:
        token = await api.signup("scale@bench.example")
        return token, await api.datasets(datasets, "scale")


async def _rung(server: harness.Server, token: str, datasets: list[str], body: bytes, sha: str, c: int, uploads: int) -> Phase:
    conns = [Conn(server.base) for _ in range(c)]

    async def upload(w: int, i: int) -> None:
        conn = conns[w]
        with trio.fail_after(OP_TIMEOUT):
            up = (await conn.request("POST", f"/v1/datasets/{datasets[(w + i * c) % len(datasets)]}/objects/upload", token=token,
                                     json={"filename": "scale.txt", "content_type": "text/plain", "size_bytes": len(body),
                                           "checksum_sha256": sha})).data(201)
            reply = await conn.request("PUT", up["upload_url"], body=body)
            if reply.status != 200:
                raise ApiError(reply.status, "put")
            (await conn.request("POST", f"/v1/objects/{up['object_id']}/confirm", json={}, token=token)).data(200)

    async def guarded(w: int, i: int) -> None:
        try:
            await upload(w, i)
        except trio.TooSlowError:
            raise ApiError(0, f"no answer within {OP_TIMEOUT:.0f} s") from None

    try:
        return await drive(guarded, c, 3600.0, server_pid=server.pid, max_ops=uploads)
    finally:
        for conn in conns:
            conn.close()


def _backlog() -> int:
    """The listen backlog the engine asks for (``http.backlog``, as the defaults set it)."""
    return load_config(None, overrides={}).http.backlog


def _cases(args: argparse.Namespace) -> list[tuple[str, int]]:
    """``(key suffix, datasets)`` of each case: the uploads into ``--datasets``, then spread over ``--spread``."""
    return [("", args.datasets)] + ([("_spread", args.spread)] if args.spread else [])


def _where(datasets: int) -> str:
    return "one dataset" if datasets == 1 else f"{datasets} datasets"


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    ladder = [int(x) for x in args.ladder.split(",")]
    body = os.urandom(args.object_kib * 1024)
    sha = hashlib.sha256(body).hexdigest()
    mib = len(body) / MiB
    cases = _cases(args)
    print(f"scale: ladder {ladder}, {' and '.join(_where(n) for _, n in cases)}, {args.object_kib} KiB objects, "
          f"{args.runs} run(s), RLIMIT_NOFILE {harness.raise_nofile()}, listen backlog {_backlog()}", flush=True)
    base_rates: list[float] = []
    phases: dict[str, list[Phase]] = {f"{c}{case}": [] for c in ladder for case, _ in cases}
    idle: dict[str, list[float]] = {k: [] for k in phases}
    peak: dict[str, list[float]] = {k: [] for k in phases}
    for run in range(args.runs):
        base_rates.append(physical(work / "physical", body, min(200, args.min_uploads)))
        print(f"  run {run + 1} physical: {base_rates[-1]:,.0f} objects/s", flush=True)
        for c in ladder:
            uploads = max(args.min_uploads, c * args.per_client)
            order = cases if run % 2 == 0 else cases[::-1]  # which case goes first alternates
            for case, count in order:
                key = f"{c}{case}"
                with harness.engine(work / f"data-{run}-{key}") as server:
                    token, datasets = trio.run(_setup, server.base, count)
                    idle[key].append(server.rss_mib())
                    os.sync()
                    phase = trio.run(_rung, server, token, datasets, body, sha, c, uploads)
                    peak[key].append(server.peak_rss_mib())
                phases[key].append(phase)
                errs = f", errors {dict(phase.errors)}" if phase.errors else ""
                print(f"  run {run + 1} c={c:<5} {_where(count):<12} {phase.ops:>5}/{uploads} uploads {phase.rate:>7,.1f}/s "
                      f"({phase.rate * mib:,.0f} MiB/s)  p50 {phase.pct_ms(0.5):8.1f} ms  p99 {phase.pct_ms(0.99):8.1f} ms  "
                      f"server CPU {phase.server_cpu:.2f}  client CPU {phase.client_cpu:.2f}  "
                      f"RSS idle {idle[key][-1]:.0f} -> peak {peak[key][-1]:.0f} MiB{errs}", flush=True)
                shutil.rmtree(work / f"data-{run}-{key}", ignore_errors=True)

    rows = [Row("physical", f"physical: SHA-256 + write + fsync of {args.object_kib} KiB files, one at a time", "objects/s",
                base_rates, is_baseline=True, short="physical")]
    for c in ladder:
        uploads = max(args.min_uploads, c * args.per_client)
        for case, count in cases:
            ps = phases[f"{c}{case}"]
            errors: Counter[str] = Counter()
            for p in ps:
                errors.update(p.errors)
            err_note = ("errors " + ", ".join(f"{k}×{v}" for k, v in sorted(errors.items()))) if errors else "0 errors"
            rows.append(Row(f"c{c}{case}", f"{c} concurrent, {_where(count)}: initiate + PUT + confirm ({uploads} uploads)",
                            "objects/s", [p.rate for p in ps], baseline="physical", p50=[p.pct_ms(0.5) for p in ps],
                            p99=[p.pct_ms(0.99) for p in ps], note=f"{median([p.rate * mib for p in ps]):,.0f} MiB/s; {err_note}",
                            extra={"errors": dict(errors), "ops": [p.ops for p in ps], "uploads": uploads,
                                   "server_cpu": [p.server_cpu for p in ps], "client_cpu": [p.client_cpu for p in ps]}))
        if args.spread:
            rows.append(Row(f"c{c}_one_vs_spread", f"{c} concurrent: {_where(args.datasets)} ÷ spread over {args.spread}",
                            "objects/s", [p.rate for p in phases[str(c)]], base_values=[p.rate for p in phases[f"{c}_spread"]],
                            chart=False, note="target ≥ 0.9"))
    for c in ladder:
        for case, count in cases:
            key = f"{c}{case}"
            rows.append(Row(f"rss{key}", f"{c} concurrent, {_where(count)}: server peak RSS (VmHWM)", "MiB", peak[key],
                            base_values=idle[key], lower_is_better=True, chart=False,
                            note=f"÷ the same server idle: {median(idle[key]):.0f} MiB" + ("; target ≤ 200 MiB" if c >= 1000 else "")))
    section = Section("scale", f"Scale: {args.object_kib} KiB uploads into {_where(args.datasets)}"
                      + (f" and spread over {args.spread}" if args.spread else "") + ", concurrency ladder", rows)
    section.baselines = [
        f"physical = SHA-256 + write + fsync of {args.object_kib} KiB files one at a time in the benchmark's process "
        "(same run): the per-object floor of a verifying store without HTTP.",
        "RSS rows: ÷ the same fresh server's RSS when idle, after sign-up and dataset creation.",
    ]
    section.notes = [f"each rung runs on a fresh engine, once per case; clients start together; errors are counted, "
                     f"never retried (the engine's listen backlog: {_backlog()})."]
    section.meta = {"ladder": ladder, "datasets": args.datasets, "spread": args.spread, "object_kib": args.object_kib,
                    "runs": args.runs, "idle_rss_mib": idle, "peak_rss_mib": peak}
    return [section]
