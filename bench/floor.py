"""The floor of small uploads on this HTTP stack, against tus and the engine, in one run.

    python -m bench floor [--small 2000x100KiB,5000x10KiB] [--small-concurrency 32,128] [--runs 3]
                          [--variants asgi:none:1,asgi:durable:1,...] [--no-engine]

Is ≥ 1.0× tus for small files reachable on Hypercorn + Trio at all? Per shape and
concurrency, on the same files (:mod:`bench.smallfiles`), who goes first rotating between
runs:

* **tus** (:mod:`bench.peer`), creation ``POST`` + one ``PATCH`` per file, as ``upload`` runs it;
* **floor** servers (:mod:`bench.floor_server`): the engine's Hypercorn configuration in
  front of an app that answers the engine's three requests (initiate, PUT, confirm) with
  no engine behind them. Each variant is ``APP:WORK:PROCESSES[@CPUS]``: ``APP`` ``asgi``
  (plain ASGI, as engine/http/hot.py) or ``quart`` (Quart-Trio routes); ``WORK`` ``none``
  (the body read and discarded) or ``durable`` (declared SHA-256 checked, body hashed,
  written and fsynced before the PUT answers); ``PROCESSES`` sharing one listening
  socket; ``@CPUS`` pins the server with ``sched_setaffinity`` as ``taskset -c`` does
  (e.g. ``@0``: one core);
* **the engine** (``ipto serve``, SQLite, local blobs, one process, one dataset): the
  seed's flow with auth, store, actor and logs.

Rows: files/s (median over the runs), ÷ tus, and in the note the server's CPU per file
(all its processes and threads, from ``/proc``) and the engine ÷ the floors.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, peer, smallfiles  # noqa: E402
from bench.client import Api  # noqa: E402
from bench.report import Row, Section, median  # noqa: E402

DEFAULT_VARIANTS = ("asgi:none:1,asgi:durable:1,asgi:durable:2,asgi:durable:1@0,asgi:durable:2@0,"
                    "quart:durable:1,quart:durable:2")


@dataclass(frozen=True)
class Variant:
    app: str
    work: str
    processes: int
    cpus: str | None

    @classmethod
    def parse(cls, spec: str) -> Variant:
        body, _, cpus = spec.strip().partition("@")
        app, work, processes = body.split(":")
        if app not in ("asgi", "quart") or work not in ("none", "durable") or int(processes) < 1:
            raise ValueError(f"{spec!r}: expected APP:WORK:PROCESSES[@CPUS], APP asgi|quart, WORK none|durable")
        return cls(app, work, int(processes), cpus or None)

    @property
    def key(self) -> str:
        return f"{self.app}_{self.work}_p{self.processes}" + (f"_cpu{self.cpus.replace(',', '-')}" if self.cpus else "")

    @property
    def label(self) -> str:
        cores = f", {len(self.cpus.split(','))} core(s) ({self.cpus})" if self.cpus else ", 2 cores"
        plural = "es" if self.processes > 1 else ""
        return f"floor {self.app}, {self.work}, {self.processes} process{plural}{cores}"


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--small", default="1000x100KiB,2000x10KiB" if quick else "2000x100KiB,5000x10KiB",
                        help="shapes, COUNTxSIZE (bytes, KiB or MiB), comma-separated")
    parser.add_argument("--small-concurrency", default="32,128", help="uploads at a time")
    parser.add_argument("--runs", type=int, default=1 if quick else 3)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="floor servers, APP:WORK:PROCESSES[@CPUS], comma-separated")
    parser.add_argument("--no-engine", action="store_true", help="leave the engine out")
    parser.add_argument("--no-peer", action="store_true", help="leave tus out (no node/npm)")
    parser.add_argument("--engine-workers", type=int, default=None, help="the engine's http.workers (default: its own)")
    parser.add_argument("--engines", default="",
                        help="several engines in the same run, LABEL=SOURCE_TREE[@CPUS],... (each run with PYTHONPATH=SOURCE_TREE: "
                             "a before/after on the same files; @CPUS pins it as taskset -c does); "
                             "default: one engine from this tree")


def _pinned(argv: list[str], cpus: str | None) -> list[str]:
    if cpus is None:
        return argv
    return [sys.executable, "-c", f"import os, sys; os.sched_setaffinity(0, {{{cpus}}}); os.execv(sys.executable, sys.argv[1:])",
            *argv]


def floor_server(variant: Variant, directory: Path, log: Path) -> contextlib.AbstractContextManager[harness.Server]:
    port = harness.free_port()
    argv = [sys.executable, "-m", "bench.floor_server", "--port", str(port), "--app", variant.app, "--work", variant.work,
            "--processes", str(variant.processes), "--dir", str(directory)]
    return harness.running(f"floor {variant.key}", _pinned(argv, variant.cpus), f"http://127.0.0.1:{port}", log,
                           probe="/ping", env=dict(os.environ))


def _clear(directory: Path) -> None:
    """Drop the durable floor's files (between passes, outside the timing)."""
    if directory.is_dir():
        for child in directory.iterdir():
            if child.is_dir():
                for f in child.iterdir():
                    f.unlink()


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    work.mkdir(parents=True, exist_ok=True)
    variants = [Variant.parse(v) for v in args.variants.split(",") if v.strip()]
    use_peer = not args.no_peer
    node = peer.install() if use_peer else ""
    levels = [int(c) for c in args.small_concurrency.split(",") if c.strip()]
    shapes = smallfiles.parse_files(args.small)
    jobs = [(count, size, c) for count, size in shapes for c in levels]
    source_mib = max(8, -(-max(count * (size + 4096) for count, size in shapes) // harness.MiB) + 1)
    big = work / "small.bin"
    print(f"floor: generating {source_mib} MiB of random data ...", flush=True)
    harness.random_file(big, source_mib)
    total = source_mib * harness.MiB
    files = {}
    for count, size in shapes:  # the same slices as bench/upload.py's small shapes
        offsets = [(i * (size + 4096)) % (total - size) for i in range(count)]
        files[count, size] = smallfiles.Files(big, size, offsets, [harness.sha256_file(big, off, size) for off in offsets])
    results: dict[str, list[smallfiles.Result]] = {}
    tus_dir = work / "tus-files"
    with contextlib.ExitStack() as stack:
        floors = {v.key: stack.enter_context(floor_server(v, work / f"floor-{v.key}", work / f"floor-{v.key}.log"))
                  for v in variants}
        tus = stack.enter_context(peer.tus_server(tus_dir, work / "tus.log")) if use_peer else None
        engines: dict[str, harness.Server] = {}
        if not args.no_engine:
            env = {} if args.engine_workers is None else {"IPTO_HTTP_WORKERS": str(args.engine_workers)}
            for label, tree, cpus in _engine_trees(args.engines):
                tree_env = env if tree is None else {**env, "PYTHONPATH": tree}
                engines[label] = stack.enter_context(harness.engine(work / f"data-{label}", env=tree_env, cpus=cpus))

        async def setup(base: str) -> tuple[str, str]:
            async with Api(base) as api:
                token = await api.signup("floor@bench.example")
                return token, (await api.datasets(1, "floor"))[0]

        accounts = {label: trio.run(setup, engine.base) for label, engine in engines.items()}

        async def measure(run: int) -> None:
            for count, size, c in jobs:
                await combo(run, count, size, c)

        async def combo(run: int, count: int, size: int, c: int) -> None:
            fs = files[count, size]

            async def ours(key: str, server: harness.Server, tok: str, ds: str, clear: Path | None) -> None:
                os.sync()
                result, _ = await smallfiles.ours(fs, c, server.base, tok, [ds], [server.pid])
                results.setdefault(f"{count}x{size}_c{c}_{key}", []).append(result)
                if clear is not None:
                    _clear(clear)

            async def theirs() -> None:
                assert tus is not None
                os.sync()
                results.setdefault(f"{count}x{size}_c{c}_tus", []).append(
                    await smallfiles.tus(fs, c, tus.base, [tus.pid]))
                peer.clear(tus_dir)

            steps: list[Callable[[], Awaitable[None]]] = [theirs] if use_peer else []
            steps += [functools.partial(ours, v.key, floors[v.key], "floor", "ds_floor", work / f"floor-{v.key}")
                      for v in variants]
            for label, engine in engines.items():
                steps.append(functools.partial(ours, label, engine, *accounts[label], None))
            k = run % len(steps)
            for step in steps[k:] + steps[:k]:
                await step()
            line = ", ".join(f"{key.split('_', 2)[2]} {res[-1].rate:.0f}" for key, res in results.items()
                             if key.startswith(f"{count}x{size}_c{c}_") and len(res) > run)
            print(f"  run {run + 1}, {count} × {smallfiles.size_label(size)} at {c}: {line} files/s", flush=True)

        for run in range(args.runs):
            trio.run(measure, run)
    if not args.keep_work:
        shutil.rmtree(tus_dir, ignore_errors=True)
    return [_section(args, jobs, variants, results, node, use_peer, list(engines))]


def _engine_trees(spec: str) -> list[tuple[str, str | None, str | None]]:
    """``--engines``: (label, source tree or None for this process's own, CPUs or None) per engine."""
    if not spec.strip():
        return [("engine", None, None)]
    out: list[tuple[str, str | None, str | None]] = []
    for part in spec.split(","):
        label, _, rest = part.partition("=")
        tree, _, cpus = rest.partition("@")
        if not tree or not (Path(tree) / "engine").is_dir():
            raise ValueError(f"--engines {part!r}: expected LABEL=SOURCE_TREE[@CPUS] (a directory holding engine/)")
        out.append((f"engine-{label.strip()}", str(Path(tree).resolve()), cpus or None))
    return out


def _cpu_ms(res: list[smallfiles.Result]) -> float:
    """Median server CPU per file, ms."""
    return median([r.server_cpu / r.rate * 1000 for r in res if r.rate])


def _section(args: argparse.Namespace, jobs: list[tuple[int, int, int]], variants: list[Variant],
             results: dict[str, list[smallfiles.Result]], node: str, use_peer: bool, engines: list[str]) -> Section:
    rows: list[Row] = []
    for count, size, c in jobs:
        prefix = f"{count}x{size}_c{c}_"
        shape = f"{count:,} × {smallfiles.size_label(size)}, {c} at a time"
        tus_key = prefix + "tus"

        def row(key: str, label: str, note: str = "", is_baseline: bool = False, tus_key: str = tus_key) -> Row:
            res = results[key]
            errors = sum((r.errors for r in res), start=Counter())
            note = f"{_cpu_ms(res):.2f} ms CPU/file" + (f"; {note}" if note else "")
            if errors:
                note += "; errors " + ", ".join(f"{k}×{v}" for k, v in sorted(errors.items()))
            return Row(key, label, "files/s", [r.rate for r in res], baseline=None if is_baseline or not use_peer else tus_key,
                       is_baseline=is_baseline, p50=[r.pct_ms(0.5) for r in res], p99=[r.pct_ms(0.99) for r in res],
                       note=note, short="tus" if is_baseline else "",
                       extra={"server_cpu": [r.server_cpu for r in res], "cpu_ms_per_file": _cpu_ms(res),
                              "errors": dict(errors)})

        if use_peer:
            rows.append(row(tus_key, f"tus: {shape}", is_baseline=True))
        for v in variants:
            rows.append(row(prefix + v.key, f"{v.label}: {shape}"))
        for label in engines:
            eng = median([r.rate for r in results[prefix + label]])
            vs = [f"{eng / median([r.rate for r in results[prefix + v.key]]):.2f}× {v.key}" for v in variants
                  if v.processes == 1 and v.cpus is None and v.work == "durable"]
            if label != engines[0]:
                vs.append(f"{eng / median([r.rate for r in results[prefix + engines[0]]]):.2f}× {engines[0]}")
            rows.append(row(prefix + label, f"{label} (SQLite, 1 dataset): {shape}", "; ".join(vs)))
    section = Section("floor", "Small uploads: the zero-work floor on the engine's HTTP stack vs tus vs the engine", rows)
    section.baselines = [
        f"tus = @tus/server {peer.PACKAGES['@tus/server']} + @tus/file-store {peer.PACKAGES['@tus/file-store']} "
        f"(node {node}): creation POST + one PATCH per file, no checksum, no fsync."] if use_peer else []
    section.notes = [
        "floor = Hypercorn with the engine's knobs and patches + an app answering initiate / PUT / confirm with no auth, "
        "store, actor, log or metrics; 'durable' = declared SHA-256 checked, body hashed + written + fsynced in one "
        "thread job before the PUT answers; 'none' = body read and discarded.",
        "server CPU per file: all the server's processes and threads, from /proc, over the pass.",
        "left out: TLS, clients on other machines (the client shares the 2 cores with the server), the engine's row "
        "and its WAL fsync in the floor, directory fsyncs, renames.",
    ]
    section.meta = {"small": args.small, "small_concurrency": args.small_concurrency, "runs": args.runs,
                    "variants": args.variants}
    return section


if __name__ == "__main__":
    from bench.__main__ import entry

    sys.exit(entry(["floor", *sys.argv[1:]]))
