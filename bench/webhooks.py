"""Webhook fan-out cost: uploads while 1,000 events/s go out to 10 endpoints, against uploads
with no endpoints, in the same run.

    python -m bench webhooks [--events-per-second 1000] [--endpoints 10] [--files 600] [--size-kib 100]
                             [--concurrency 16] [--runs 3] [--fanout spread|all]

One engine (SQLite, local blobs) started by :mod:`bench.webhook_engine`: the engine as
``ipto serve`` runs it, and beside it in its process the benchmark's event source, which
writes ``--events-per-second`` ``dataset.updated`` events into the outbox through the
store's API (``emit_events``, one transaction per tenth of a second), round-robin over the
tenants that have webhooks; the delivery worker finds them as it finds any event. Nothing
of this is in the engine. Ten receivers (:mod:`bench.webhook_sink`, one
process, one port each) answer 204.

* ``--fanout spread`` (default): 10 tenants with one endpoint each, so the 1,000 events/s
  make 1,000 deliveries/s, 100 to each endpoint.
* ``--fanout all``: one tenant with 10 endpoints, each subscribed to every event, so every
  event goes to all 10 (10,000 deliveries/s asked for).

Each run uploads ``--files`` small files (initiate + PUT + confirm, ``--concurrency`` at a
time, into one dataset of an eleventh tenant) twice, in alternating order: with every
endpoint **disabled** (the baseline: the events' transactions still run, find no enabled
endpoint and write no rows) and **enabled** (events and deliveries are written,
claimed, signed and sent).
The ratio is uploads/s enabled ÷ disabled; the issue's target is ≥ 0.90. Also printed:
deliveries received per second during the enabled pass, and the backlog left after it.

Left out: TLS (the receivers are plain HTTP on loopback), DNS (addresses are literals),
slow or failing receivers (tests/webhooks cover those), PostgreSQL, and the cost of making
the events (here a transaction of ~100 events ten times a second, in both passes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import trio

from bench import harness, smallfiles
from bench.client import Api
from bench.harness import tree_cpu_seconds
from bench.report import Row, Section, median


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--events-per-second", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--files", type=int, default=300 if quick else 600)
    parser.add_argument("--size-kib", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=2 if quick else 3)
    parser.add_argument("--fanout", choices=("spread", "all"), default="spread")
    parser.add_argument("--cpu-seconds", type=float, default=8.0, help="length of each phase of the CPU-per-delivery measure")


async def _sink_count(port: int) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"http://127.0.0.1:{port}/count")).text)


async def _sink_cpu(port: int) -> float:
    async with httpx.AsyncClient() as client:
        return float((await client.get(f"http://127.0.0.1:{port}/cpu")).text)


async def _cpu_per_delivery(api: Api, hooks: list[tuple[str, str]], port: int, pid: int, seconds: float) -> dict[str, float]:
    """With no uploads: the engine's CPU per second with every endpoint disabled (the event
    source alone), then enabled (plus claiming, signing, sending, recording); the extra CPU
    per delivery received, the sink's CPU per delivery, and the deliveries per second."""
    await _set_status(api, hooks, "disabled")
    await trio.sleep(1.0)
    cpu0, t0 = tree_cpu_seconds(pid), time.perf_counter()
    await trio.sleep(seconds)
    idle = (tree_cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0)
    await _set_status(api, hooks, "enabled")
    await trio.sleep(1.0)
    cpu0, sink0, n0, t0 = tree_cpu_seconds(pid), await _sink_cpu(port), await _sink_count(port), time.perf_counter()
    await trio.sleep(seconds)
    cpu1, sink1, n1, took = tree_cpu_seconds(pid), await _sink_cpu(port), await _sink_count(port), time.perf_counter() - t0
    await _set_status(api, hooks, "disabled")
    n = max(1, n1 - n0)
    return {"engine_ms": ((cpu1 - cpu0) - idle * took) / n * 1000, "sink_ms": (sink1 - sink0) / n * 1000, "rate": n / took,
            "engine_cores": (cpu1 - cpu0) / took, "idle_cores": idle}


async def _set_status(api: Api, hooks: list[tuple[str, str]], status: str) -> None:
    for token, hook_id in hooks:
        await api.call("PATCH", f"/v1/webhooks/{hook_id}", {"status": status}, headers={"Authorization": f"Bearer {token}"})


def _db_counts(db: Path) -> tuple[int, int]:
    """``(events written, deliveries pending)`` read straight from the engine's SQLite file (WAL: no lock taken)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        events = conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0]
        pending = conn.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'").fetchone()[0]
    return int(events), int(pending)


async def _drive(args: argparse.Namespace, base: str, ports: list[int], files: smallfiles.Files, pid: int, db: Path) -> Section:
    async with Api(base) as api:
        hooks: list[tuple[str, str]] = []
        tenants = args.endpoints if args.fanout == "spread" else 1
        for t in range(tenants):
            token = await api.signup(f"hooks{t}-{os.getpid()}@example.com")
            mine = ports[t::tenants] if args.fanout == "spread" else ports
            for port in mine:
                hook = await api.call("POST", "/v1/webhooks", {"url": f"http://127.0.0.1:{port}/hook", "events": ["*"]})
                hooks.append((token, hook["webhook_id"]))
        uploader = await api.signup(f"uploader-{os.getpid()}@example.com")
        (dataset,) = await api.datasets(1)
        return await _passes(args, api, hooks, ports, files, pid, db, base, uploader, dataset)


async def _passes(args: argparse.Namespace, api: Api, hooks: list[tuple[str, str]], ports: list[int], files: smallfiles.Files,
                  pid: int, db: Path, base: str, uploader: str, dataset: str) -> Section:
    rates: dict[str, list[float]] = {"off": [], "on": []}
    delivered: list[float] = []
    backlog: list[float] = []
    written: list[float] = []
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    client: dict[str, list[float]] = {"off": [], "on": []}
    sink_cores: list[float] = []
    for run in range(args.runs):
        order = ("off", "on") if run % 2 == 0 else ("on", "off")
        for mode in order:
            await _set_status(api, hooks, "enabled" if mode == "on" else "disabled")
            await trio.sleep(1.0)
            before, sink0 = await _sink_count(ports[0]), await _sink_cpu(ports[0])
            events0, _ = _db_counts(db)
            t0 = time.perf_counter()
            result, _ = await smallfiles.ours(files, args.concurrency, base, uploader, [dataset], [pid])
            took = time.perf_counter() - t0
            if result.errors:
                print(f"  {mode}: errors {dict(result.errors)}", file=sys.stderr)
            rates[mode].append(result.rate)
            cpu[mode].append(result.server_cpu)
            client[mode].append(result.client_cpu)
            if mode == "on":
                delivered.append((await _sink_count(ports[0]) - before) / took)
                sink_cores.append((await _sink_cpu(ports[0]) - sink0) / took)
                events1, pending = _db_counts(db)
                written.append((events1 - events0) / took)
                backlog.append(float(pending))
            print(f"  run {run + 1} {mode}: {result.rate:.1f} uploads/s, engine CPU {result.server_cpu:.2f} cores,"
                  f" client {result.client_cpu:.2f}" + (f", sinks {sink_cores[-1]:.2f}, delivered {delivered[-1]:.0f}/s" if mode == "on" else ""),
                  flush=True)
        await _set_status(api, hooks, "disabled")  # the backlog left waits for the next enabled pass
    per = [await _cpu_per_delivery(api, hooks, ports[0], pid, args.cpu_seconds) for _ in range(2)]
    for p in per:
        print(f"  no uploads: {p['rate']:.0f} deliveries/s, engine {p['engine_ms']:.2f} ms CPU per delivery"
              f" ({p['engine_cores']:.2f} cores, {p['idle_cores']:.2f} with endpoints disabled), sink {p['sink_ms']:.2f} ms", flush=True)
    fanout = "10 endpoints, each event to one (100/s each)" if args.fanout == "spread" else "every event to all 10 endpoints"
    rows = [
        Row("off", f"uploads, {args.files} × {args.size_kib} KiB, endpoints disabled", "uploads/s", rates["off"],
            is_baseline=True, short="no endpoints", extra={"engine_cpu": cpu["off"]}),
        Row("on", f"uploads while {args.events_per_second} events/s go out ({fanout})", "uploads/s", rates["on"],
            baseline="off", note="target ≥ 0.90", extra={"engine_cpu": cpu["on"]}),
        Row("written", "events written to the outbox during the enabled pass", "per s", written, chart=False),
        Row("delivered", "deliveries received by the sinks during the enabled pass", "per s", delivered, chart=False),
        Row("backlog", "deliveries pending at the end of the enabled pass", "deliveries", backlog, chart=False,
            lower_is_better=True),
        Row("sink_cores", "the sinks' CPU during the enabled pass", "cores", sink_cores, chart=False, lower_is_better=True),
        Row("client_off", "the benchmark client's CPU, endpoints disabled", "cores", client["off"], chart=False, lower_is_better=True),
        Row("client_on", "the benchmark client's CPU, endpoints enabled", "cores", client["on"], chart=False, lower_is_better=True),
        Row("alone", "deliveries per second with no uploads (every endpoint enabled, a backlog waiting)", "per s",
            [p["rate"] for p in per], chart=False),
        Row("engine_ms", "engine CPU per delivery, no uploads (claim, sign, send, record; the event source's own CPU subtracted)",
            "ms", [p["engine_ms"] for p in per], chart=False, lower_is_better=True),
        Row("sink_ms", "sink CPU per delivery received", "ms", [p["sink_ms"] for p in per], chart=False, lower_is_better=True),
    ]
    return Section("webhooks", "Webhook fan-out cost: uploads with and without endpoints", rows,
                   baselines=["the same uploads into the same engine with every endpoint disabled (the events' "
                              "transactions still run but match no endpoint: the rows, the claims and the sending differ)"],
                   notes=[f"engine CPU (cores) off {median(cpu['off']):.2f}, on {median(cpu['on']):.2f}"],
                   meta={"events_per_second": args.events_per_second, "endpoints": args.endpoints, "fanout": args.fanout})


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    work.mkdir(parents=True, exist_ok=True)
    size = args.size_kib * 1024
    source = harness.random_file(work / "source.bin", max(1, (args.files * size) // (1024 * 1024) + 1))
    offsets = [i * size for i in range(args.files)]
    files = smallfiles.Files(source, size, offsets, [harness.sha256_file(source, off, size) for off in offsets])
    ports = [harness.free_port() for _ in range(args.endpoints)]
    sink_argv = [sys.executable, "-m", "bench.webhook_sink", "--ports", ",".join(map(str, ports))]
    env = {**os.environ, "IPTO_LOG_LEVEL": "warning", "IPTO_LOG_FORMAT": "json", "IPTO_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true"}
    port = harness.free_port()
    engine_argv = [sys.executable, "-m", "bench.webhook_engine", "--events-per-second", str(args.events_per_second),
                   "--port", str(port), "--data-dir", str(work / "data")]
    with harness.running("sink", sink_argv, f"http://127.0.0.1:{ports[0]}", work / "sink.log", probe="/count",
                         env=dict(os.environ)), harness.running("engine", engine_argv, f"http://127.0.0.1:{port}", work / "data.log",
                                                                probe="/v1/health", env=env) as engine:
        section = trio.run(_drive, args, engine.base, ports, files, engine.proc.pid, work / "data" / "engine.db")
    return [section]
