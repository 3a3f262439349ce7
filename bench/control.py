"""Control-plane benchmark: small-object initiate/confirm and object reads against the stack's ceiling.

    python -m bench control [--levels 1,16,128] [--seconds 3] [--runs 3] [--datasets 1] [--spread 16]

Starts the engine (``IPTO_LOG_LEVEL=warning``) and :mod:`bench.ceiling` (the same Hypercorn
+ Quart-Trio stack with trivial JSON routes and the engine's Hypercorn knobs), then per run
and per concurrency level, each for ``--seconds`` after a short unmeasured warm-up, with
that many closed-loop clients, each with its own keep-alive connection (:class:`bench.client.Conn`):

* ceiling ``GET /v1/ping`` and ``POST /v1/echo`` (a JSON body in, 201 JSON out);
* initiate alone: ``POST /v1/datasets/{id}/objects/upload`` of a 1 KiB object (checksum
  declared), no Idempotency-Key;
* the whole cycle: initiate + presigned ``PUT`` of the 1 KiB + ``POST /v1/objects/{id}/confirm``
  (confirm's own p50/p99 reported apart);
* ``GET /v1/objects/{id}`` of objects confirmed above.

Initiate and confirm go through the dataset's actor, so where the clients' uploads go
matters: by default every client uses **one** dataset (``--datasets 1``, the shape of a
provider loading a corpus), and initiate and the cycle are measured again with the clients
spread over ``--spread`` datasets (client *i* uses dataset *i* mod N), with the ratio one
dataset ÷ spread (``--spread 0`` skips it).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from bench import harness
from bench.client import Api, ApiError, Conn
from bench.drive import Phase, drive
from bench.report import Row, Section, median

OBJECT = os.urandom(1024)
OBJECT_SHA = hashlib.sha256(OBJECT).hexdigest()


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--levels", default="1,16,128", help="concurrent clients, comma-separated")
    parser.add_argument("--seconds", type=float, default=2.0 if quick else 3.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each phase")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--datasets", type=int, default=1, help="datasets the clients use (1: all into one)")
    parser.add_argument("--spread", type=int, default=16, help="datasets of the spread case (0: not measured)")


def _initiate_body(i: int) -> dict[str, Any]:
    return {"filename": f"small-{i}.txt", "content_type": "text/plain", "size_bytes": len(OBJECT),
            "checksum_sha256": OBJECT_SHA}


class Ops:
    """The measured operations of one level: ``c`` clients, each with its own connections."""

    def __init__(self, c: int, engine: harness.Server, ceiling: harness.Server, token: str, datasets: list[str],
                 confirmed: list[str]) -> None:
        self.ceil = [Conn(ceiling.base) for _ in range(c)]
        self.eng = [Conn(engine.base) for _ in range(c)]
        self.token, self.datasets, self.confirmed = token, datasets, confirmed

    def into(self, datasets: list[str]) -> Ops:
        """The same clients and connections, their uploads going to ``datasets``."""
        other = copy.copy(self)
        other.datasets = datasets
        return other

    def close(self) -> None:
        for conn in self.ceil + self.eng:
            conn.close()

    def _upload_path(self, w: int) -> str:
        return f"/v1/datasets/{self.datasets[w % len(self.datasets)]}/objects/upload"

    async def ceil_get(self, w: int, i: int) -> None:
        (await self.ceil[w].request("GET", "/v1/ping")).data(200)

    async def ceil_post(self, w: int, i: int) -> None:
        (await self.ceil[w].request("POST", "/v1/echo", json=_initiate_body(i))).data(201)

    async def initiate(self, w: int, i: int) -> None:
        (await self.eng[w].request("POST", self._upload_path(w), json=_initiate_body(i), token=self.token)).data(201)

    async def cycle(self, w: int, i: int) -> dict[str, float]:
        conn = self.eng[w]
        t0 = time.perf_counter()
        up = (await conn.request("POST", self._upload_path(w), json=_initiate_body(i), token=self.token)).data(201)
        t1 = time.perf_counter()
        reply = await conn.request("PUT", up["upload_url"], body=OBJECT)
        if reply.status != 200:
            raise ApiError(reply.status, "put")
        t2 = time.perf_counter()
        (await conn.request("POST", f"/v1/objects/{up['object_id']}/confirm", json={}, token=self.token)).data(200)
        self.confirmed.append(up["object_id"])
        return {"initiate": t1 - t0, "put": t2 - t1, "confirm": time.perf_counter() - t2}

    async def get(self, w: int, i: int) -> None:
        if not self.confirmed:
            raise ApiError(0, "nothing_confirmed")
        oid = self.confirmed[(w * 7919 + i) % len(self.confirmed)]
        (await self.eng[w].request("GET", f"/v1/objects/{oid}", token=self.token)).data(200)


async def _measure(args: argparse.Namespace, engine: harness.Server, ceiling: harness.Server,
                   results: dict[str, list[Phase]]) -> None:
    levels = [int(x) for x in args.levels.split(",")]
    async with Api(engine.base, connections=8) as setup:
        token = await setup.signup("control@bench.example")
        datasets = await setup.datasets(args.datasets, "control")
        spread = await setup.datasets(args.spread, "spread")
    confirmed: list[str] = []
    for run in range(args.runs):
        for c in levels:
            ops = Ops(c, engine, ceiling, token, datasets, confirmed)
            phases = [("ceil_get", ops.ceil_get, ceiling), ("ceil_post", ops.ceil_post, ceiling),
                      ("initiate", ops.initiate, engine), ("cycle", ops.cycle, engine)]
            if spread:
                phases += [("initiate_spread", ops.into(spread).initiate, engine),
                           ("cycle_spread", ops.into(spread).cycle, engine)]
            try:
                for name, op, server in [*phases, ("get", ops.get, engine)]:
                    phase = await drive(op, c, args.seconds, warmup=args.warmup, server_pid=server.pid)
                    results.setdefault(f"{name}_{c}", []).append(phase)
                    errs = f", errors {dict(phase.errors)}" if phase.errors else ""
                    print(f"  run {run + 1} c={c:<4} {name:<15} {phase.rate:>8,.0f}/s  p50 {phase.pct_ms(0.5):7.2f} ms  "
                          f"p99 {phase.pct_ms(0.99):7.2f} ms  server CPU {phase.server_cpu:.2f}  client CPU "
                          f"{phase.client_cpu:.2f}{errs}", flush=True)
            finally:
                ops.close()


def _row(key: str, label: str, unit: str, phases: list[Phase], *, baseline: str | None = None, is_baseline: bool = False,
         step: str = "total", chart: bool = True, note: str = "", short: str = "") -> Row:
    errors: Counter[str] = Counter()
    for p in phases:
        errors.update(p.errors)
    if errors:
        note = (note + "; " if note else "") + "errors " + ", ".join(f"{k}×{v}" for k, v in sorted(errors.items()))
    return Row(key, label, unit, [p.rate for p in phases], baseline=baseline, is_baseline=is_baseline,
               p50=[p.pct_ms(0.5, step) for p in phases], p99=[p.pct_ms(0.99, step) for p in phases], chart=chart, note=note, short=short,
               extra={"server_cpu": [p.server_cpu for p in phases], "client_cpu": [p.client_cpu for p in phases],
                      "ops": [p.ops for p in phases], "errors": dict(errors)})


def _one(args: argparse.Namespace) -> str:
    return "one dataset" if args.datasets == 1 else f"{args.datasets} datasets"


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    print(f"control plane: levels {args.levels}, {args.seconds:g} s per phase, {args.runs} runs, "
          f"{args.datasets} dataset(s), spread case {args.spread}", flush=True)
    results: dict[str, list[Phase]] = {}
    with harness.ceiling(work / "ceiling.log") as ceiling, harness.engine(work / "control-data") as engine:
        trio.run(_measure, args, engine, ceiling, results)
        rss = engine.peak_rss_mib()
    rows: list[Row] = []
    for c in [int(x) for x in args.levels.split(",")]:
        r = {k: v for k, v in results.items() if k.endswith(f"_{c}")}
        rows += [
            _row(f"ceil_get_{c}", f"c={c}: ceiling GET /v1/ping", "req/s", r[f"ceil_get_{c}"], is_baseline=True,
                 short="ceiling GET"),
            _row(f"ceil_post_{c}", f"c={c}: ceiling POST /v1/echo (JSON body)", "req/s", r[f"ceil_post_{c}"], is_baseline=True,
                 short="ceiling POST"),
            _row(f"initiate_{c}", f"c={c}: initiate 1 KiB object, {_one(args)}", "req/s", r[f"initiate_{c}"],
                 baseline=f"ceil_post_{c}", note="target ≥ 0.40"),
            _row(f"cycle_{c}", f"c={c}: initiate + PUT 1 KiB + confirm, {_one(args)}", "cycles/s", r[f"cycle_{c}"],
                 baseline=f"ceil_post_{c}", note="3 requests per cycle"),
            _row(f"confirm_{c}", f"c={c}:   confirm step of that cycle", "req/s", r[f"cycle_{c}"], baseline=f"ceil_post_{c}",
                 step="confirm", chart=False, note="latency of the step alone"),
        ]
        if args.spread:
            for name, label in (("initiate", "initiate"), ("cycle", "cycle")):
                one, spread = r[f"{name}_{c}"], r[f"{name}_spread_{c}"]
                rows.append(_row(f"{name}_spread_{c}", f"c={c}: {label}, spread over {args.spread} datasets",
                                 "req/s" if name == "initiate" else "cycles/s", spread, baseline=f"ceil_post_{c}"))
                rows.append(Row(f"{name}_one_vs_spread_{c}", f"c={c}: {label}, {_one(args)} ÷ spread over {args.spread}",
                                "req/s" if name == "initiate" else "cycles/s", [p.rate for p in one],
                                base_values=[p.rate for p in spread], chart=False, note="target ≥ 0.9"))
        rows.append(_row(f"get_{c}", f"c={c}: GET /v1/objects/{{id}}", "req/s", r[f"get_{c}"], baseline=f"ceil_get_{c}"))
    section = Section("control", "Control plane: small objects and reads vs the same stack's trivial routes", rows)
    section.baselines = [
        "ceiling = bench/ceiling.py: the same Hypercorn (hypercorn.trio.serve, engine/service.py's knobs) + Quart-Trio "
        "answering a trivial JSON route with no auth, store, actors or logging, measured in the same run at the same "
        "concurrency; POST rows are divided by POST /v1/echo, GET rows by GET /v1/ping.",
    ]
    levels = [int(x) for x in args.levels.split(",")]
    init_vs_get = [median([p.rate for p in results[f"initiate_{c}"]]) / median([p.rate for p in results[f"ceil_get_{c}"]])
                   for c in levels]
    section.notes = [
        f"{_one(args)}: every client's uploads go there" + (f" (client i -> dataset i mod {args.datasets})"
                                                            if args.datasets > 1 else "")
        + "; initiate and confirm go through the dataset's actor."
        + (f" The spread rows use {args.spread} other datasets (client i -> dataset i mod {args.spread})."
           if args.spread else ""),
        "initiate as a share of the GET /v1/ping ceiling instead: "
        + ", ".join(f"c={c} {v:.2f}" for c, v in zip(levels, init_vs_get, strict=True)) + ".",
        f"engine peak RSS over the whole control run: {rss:.0f} MiB. Server/client CPU per phase are in the JSON "
        "(1.0 = one core busy).",
    ]
    section.meta = {"levels": args.levels, "seconds": args.seconds, "runs": args.runs, "datasets": args.datasets,
                    "spread": args.spread,
                    "engine_peak_rss_mib": rss}
    return [section]
