"""``python -m bench [upload|imports|pipeline|control|scale|search|money|all]`` — see bench/README.md.

Each command starts what it measures (the engine, the ceiling app, the tus peer) as
subprocesses on loopback, drives them from this process, prints a table per section
(medians, min–max over the runs, ratios to same-run baselines), and writes
``bench/results/<command>.json``, ``.md`` and ``.png``. ``--publish`` also copies the chart
to ``bench/chart.png`` (the one bench/README.md shows). Every server is stopped on the way
out, Ctrl-C included. Nothing here asserts a timing: it reports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, report  # noqa: E402

COMMANDS = ("upload", "scale", "control", "imports", "pipeline", "ocr")  # ``all`` runs them in this order
EXTRA = ("search", "bulk", "money", "webhooks", "metrics", "floor")  # on their own only: search and money build a corpus for minutes; bulk moves 20,000 objects


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in (*COMMANDS, *EXTRA):
        module = importlib.import_module(f"bench.{name}")
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0], description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        _common(p)
    p = sub.add_parser("all", help="every benchmark with defaults that fit ~10 minutes on 2 cores")
    _common(p)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=harness.RESULTS, help="where the JSON, Markdown and PNG go")
    p.add_argument("--publish", action="store_true", help="also copy the chart to bench/chart.png")
    p.add_argument("--keep-work", action="store_true", help="keep the temporary data dirs and server logs")


def _quick_args(name: str) -> argparse.Namespace:
    """The ``all`` defaults of one benchmark (smaller than its own where it is slow)."""
    module = importlib.import_module(f"bench.{name}")
    p = argparse.ArgumentParser()
    module.add_arguments(p, quick=True)
    return p.parse_args([])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    harness.install_signal_handlers()
    nofile = harness.raise_nofile()
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    names = COMMANDS if args.command == "all" else (args.command,)
    work = Path(tempfile.mkdtemp(prefix="ipto-bench-"))
    print(f"{command}: work dir {work}, RLIMIT_NOFILE {nofile}", flush=True)
    sections: list[report.Section] = []
    started = time.perf_counter()
    failed: list[str] = []
    try:
        for name in names:
            module = importlib.import_module(f"bench.{name}")
            sub_args = _quick_args(name) if args.command == "all" else args
            os.sync()  # what the benchmark before left to write back is not this one's cost
            t0 = time.perf_counter()
            try:
                new = module.run(sub_args, work / name)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one broken benchmark does not lose the others' figures
                if args.command != "all":
                    raise
                failed.append(name)
                print(f"!! {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                continue
            for s in new:
                s.meta["seconds_taken"] = round(time.perf_counter() - t0, 1)
                print("\n" + report.text_table(s) + "\n", flush=True)
            sections += new
    finally:
        harness.stop_all()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - started
    if args.command == "all" and sections:
        print("\n==================== summary ====================\n")
        for s in sections:
            print(report.text_table(s) + "\n")
    if sections:
        js, md, png = report.save(sections, args.command, command, wall, args.out)
        if args.publish:
            shutil.copyfile(png, harness.BENCH / "chart.png")
        print(f"wall time {wall / 60:.1f} min; wrote {js}, {md}, {png}" + (" and bench/chart.png" if args.publish else ""))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def entry(argv: list[str] | None = None) -> int:
    """``main`` with Ctrl-C reported as one line (every server is already stopped by then)."""
    try:
        return main(argv)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, BaseExceptionGroup) and exc.split(KeyboardInterrupt)[1] is None)
        if not interrupted:
            raise
    print("\ninterrupted: every server started here has been stopped", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(entry())
