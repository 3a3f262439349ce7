"""Cost of metrics on the hot path: ``bench control``'s operations against an engine with
``GET /metrics`` on and one with it off, interleaved.

    python -m bench metrics [--levels 1,16] [--seconds 2] [--pairs 10]

Two engines run side by side (``IPTO_METRICS_ENABLED=true`` and ``false``; one dataset,
one account each). For each level and operation (initiate a 1 KiB object; the initiate +
PUT + confirm cycle; ``GET /v1/objects/{id}``) the two are measured in ``--pairs`` pairs
of short phases, one right after the other, the order alternating (on off, off on, on
off, ...: ABBA, so neither always goes first or always follows a warm cache): whatever
else the machine does drifts slowly next to one pair, so each pair's on ÷ off compares
like with like, and the medians of those ratios are reported.

Two figures per pair:

* **throughput**, on ÷ off (target ≥ 0.97: at most 3 % slower). Moved by any other load
  on the cores; the paired median damps that but does not remove it.
* **server CPU per operation**: the engine process's CPU seconds over the phase (user +
  system of all its threads, ``/proc/<pid>/stat``) divided by the operations it answered, on ÷ off
  (target ≤ 1.03). CPU a process spends is its own whatever else runs beside it, so this
  is the figure that resolves a few per cent on a shared machine.

Plus the cost of one request's metrics alone, timed in this process. Left out: a
scrape's own cost (one every 15 s in a usual Prometheus set-up) and the pipeline's and
imports' counters (once per stage or import, not per request).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import trio

from bench import harness
from bench.client import Api
from bench.control import Ops
from bench.drive import Phase, drive
from bench.report import Row, Section, median

OPS = ("initiate", "cycle", "get")
LABELS = {"initiate": "initiate 1 KiB", "cycle": "initiate + PUT + confirm", "get": "GET /v1/objects/{id}"}
UNITS = {"initiate": "req/s", "cycle": "cycles/s", "get": "req/s"}


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--levels", default="1,16", help="concurrent clients, comma-separated")
    parser.add_argument("--seconds", type=float, default=1.0 if quick else 2.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=0.3, help="unmeasured seconds before each phase")
    parser.add_argument("--pairs", type=int, default=4 if quick else 10, help="on/off pairs per level and operation")


def cpu_us_per_op(phase: Phase) -> float:
    """The engine's CPU microseconds per operation answered in ``phase``."""
    return phase.server_cpu * phase.elapsed / phase.ops * 1e6 if phase.ops else float("nan")


async def _measure(args: argparse.Namespace, engines: dict[str, harness.Server], results: dict[str, list[Phase]]) -> None:
    levels = [int(x) for x in args.levels.split(",")]
    setup = {}
    for name, server in engines.items():
        async with Api(server.base, connections=4) as api:
            token = await api.signup(f"metrics-{name}@bench.example")
            setup[name] = (token, await api.datasets(1, "metrics"), [])
    for c in levels:
        ops = {}
        for name, server in engines.items():
            token, datasets, confirmed = setup[name]
            ops[name] = Ops(c, server, server, token, datasets, confirmed)
        try:
            for op_name in OPS:
                for pair in range(args.pairs):
                    order = ("on", "off") if pair % 2 == 0 else ("off", "on")
                    for name in order:
                        phase = await drive(getattr(ops[name], op_name), c, args.seconds, warmup=args.warmup,
                                            server_pid=engines[name].pid)
                        results.setdefault(f"{op_name}_{c}_{name}", []).append(phase)
                        errs = f", errors {dict(phase.errors)}" if phase.errors else ""
                        print(f"  c={c:<3} {op_name:<9} pair {pair + 1:>2} metrics {name:<3} {phase.rate:>8,.0f}/s  "
                              f"server {cpu_us_per_op(phase):7.0f} µs CPU/op  p50 {phase.pct_ms(0.5):6.2f} ms{errs}", flush=True)
        finally:
            for o in ops.values():
                o.close()


def paired(on: list[Phase], off: list[Phase], figure: str) -> list[float]:
    """Each pair's on ÷ off of ``figure`` (``rate`` or ``cpu``)."""
    def of(p: Phase) -> float:
        return p.rate if figure == "rate" else cpu_us_per_op(p)

    return [of(a) / of(b) for a, b in zip(on, off, strict=True) if of(b)]


def _observe_cost(shared: bool = False, n: int = 200_000) -> float:
    """Microseconds one request's metrics take (label lookup, counter, histogram), timed in
    a fresh process; ``shared``: in the multiprocess mode of ``--workers`` (values in files)."""
    code = (
        "import sys, tempfile, timeit\nfrom pathlib import Path\nfrom engine.metrics import Metrics\n"
        f"m = Metrics(Path(tempfile.mkdtemp()) if {shared} else None)\n"
        f"print(timeit.timeit(lambda: m.observe_request('GET', '/v1/objects/{{object_id}}', 200, 0.0012), number={n}) / {n} * 1e6)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    print(f"metrics on vs off: levels {args.levels}, {args.pairs} interleaved pairs of {args.seconds:g} s phases", flush=True)
    results: dict[str, list[Phase]] = {}
    with harness.engine(work / "metrics-on", env={"IPTO_METRICS_ENABLED": "true"}) as on, \
            harness.engine(work / "metrics-off", env={"IPTO_METRICS_ENABLED": "false"}) as off:
        trio.run(_measure, args, {"on": on, "off": off}, results)
    levels = [int(x) for x in args.levels.split(",")]
    rows: list[Row] = []
    summary: dict[str, dict[str, float]] = {}
    for c in levels:
        for op in OPS:
            off_phases, on_phases = results[f"{op}_{c}_off"], results[f"{op}_{c}_on"]
            key = f"{op}_{c}"
            summary[key] = {"rate": median(paired(on_phases, off_phases, "rate")),
                            "cpu": median(paired(on_phases, off_phases, "cpu")),
                            "cpu_off_us": median([cpu_us_per_op(p) for p in off_phases]),
                            "cpu_on_us": median([cpu_us_per_op(p) for p in on_phases])}
            rows.append(Row(f"{key}_off", f"c={c}: {LABELS[op]}, metrics off", UNITS[op], [p.rate for p in off_phases],
                            is_baseline=True, p50=[p.pct_ms(0.5) for p in off_phases], p99=[p.pct_ms(0.99) for p in off_phases],
                            short=f"{op} off"))
            rows.append(Row(f"{key}_on", f"c={c}: {LABELS[op]}, metrics on", UNITS[op], [p.rate for p in on_phases],
                            baseline=f"{key}_off", p50=[p.pct_ms(0.5) for p in on_phases],
                            p99=[p.pct_ms(0.99) for p in on_phases], note="target ≥ 0.97", short=f"{op} on"))
            rows.append(Row(f"{key}_cpu_off", f"c={c}: {LABELS[op]}, server CPU, metrics off", "µs/op",
                            [cpu_us_per_op(p) for p in off_phases], is_baseline=True, lower_is_better=True, chart=False))
            rows.append(Row(f"{key}_cpu_on", f"c={c}: {LABELS[op]}, server CPU, metrics on", "µs/op",
                            [cpu_us_per_op(p) for p in on_phases], baseline=f"{key}_cpu_off", lower_is_better=True,
                            note="target ≤ 1.03", chart=False))
    section = Section("metrics", "Metrics on the hot path: the same engine with GET /metrics on and off, interleaved", rows)
    section.baselines = ["metrics off = the same engine build with IPTO_METRICS_ENABLED=false, running beside the "
                         "metrics-on one, measured in alternating pairs of phases at the same concurrency."]
    per_request, per_request_shared = _observe_cost(), _observe_cost(shared=True)
    get_cpu = summary[f"get_{levels[0]}"]["cpu_off_us"]
    section.notes = [
        "paired on ÷ off, medians of the pairs' ratios — throughput: "
        + ", ".join(f"{k} {v['rate']:.3f}" for k, v in summary.items()) + ".",
        "paired on ÷ off, medians — server CPU per operation: "
        + ", ".join(f"{k} {v['cpu']:.3f} ({v['cpu_off_us']:.0f} → {v['cpu_on_us']:.0f} µs)" for k, v in summary.items()) + ".",
        f"what metrics add to one request, measured alone in this process: {per_request:.2f} µs "
        f"(a counter and a histogram observation), {per_request / get_cpu * 100:.2f} % of the metrics-off engine's "
        f"{get_cpu:.0f} µs of CPU per GET /v1/objects/{{id}} at c={levels[0]}; with --workers (multiprocess mode, "
        f"values in memory-mapped files) {per_request_shared:.2f} µs.",
    ]
    section.meta = {"levels": args.levels, "seconds": args.seconds, "pairs": args.pairs, "summary": summary,
                    "observe_us": per_request, "observe_shared_us": per_request_shared}
    for note in section.notes:
        print(note, flush=True)
    return [section]
