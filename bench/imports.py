"""Record imports: a generated JSONL file through upload URL, PUT and processing.

    python -m bench imports [--mib 1024] [--runs 1] [--store sqlite|postgres|both]
    python bench/imports.py ...        (the same)

Generates ``--mib`` of JSONL (records of ~500 bytes, ~1% invalid against the schema), then
per run starts a fresh engine (local blobs; SQLite, or a fresh PostgreSQL database, see
:mod:`bench.stores`; with ``both`` one engine per store, in turns), requests an upload URL,
PUTs the file (zero-copy) and times until the import is terminal: every record parsed,
validated against the dataset's JSON Schema and committed in checkpointed batches.
Baseline, same run, same file: ``orjson.loads`` of every line in this one process, nothing
else. Also the server's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import trio

if __package__ in (None, ""):  # ``python bench/imports.py``: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, stores  # noqa: E402
from bench.client import Api, ApiError, send_file  # noqa: E402
from bench.report import Row, Section, median  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "email": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "bio": {"type": "string"},
    },
    "required": ["id", "name", "age"],
}
TERMINAL = ("complete", "partial", "failed", "pending_schema")
TAGS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--mib", type=int, default=256 if quick else 1024, help="size of the JSONL file")
    parser.add_argument("--runs", type=int, default=2 if quick else 1)
    stores.add_argument(parser)


def _bios(count: int, rng: random.Random) -> list[str]:
    """Free text as varied as real records': sentences of words drawn, Zipf-like, from a
    vocabulary of made-up words. (Repeating one sentence would let the engine's zstd
    packing shrink the records 25×; these compress about as much as real JSON does.)"""
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    vocab = ["".join(rng.choices(letters, weights=range(26, 0, -1), k=rng.randint(2, 10))) for _ in range(8000)]
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(vocab))))
    return [" ".join(rng.choices(vocab, cum_weights=cumulative, k=40))[: 180 + i % 60] for i in range(count)]


def generate(path: Path, mib: int) -> int:
    """Write about ``mib`` MiB of JSONL; return the record count."""
    target = mib * 1024 * 1024
    rng = random.Random(20261122)
    bios = _bios(1 << 16, rng)
    written = records = 0
    with open(path, "wb") as fh:
        while written < target:
            lines = []
            for _ in range(1000):
                age = -1 if records % 100 == 42 else records % 90  # ~1% break "minimum: 0"
                rec = {"id": records, "name": f"person {rng.getrandbits(32):x}", "email": f"p{records}@example.com", "age": age,
                       "score": round(rng.random() * 100, 2), "active": records % 2 == 0, "tags": rng.sample(TAGS, 3),
                       "bio": bios[rng.getrandbits(16)]}
                lines.append(orjson.dumps(rec))
                records += 1
            chunk = b"\n".join(lines) + b"\n"
            fh.write(chunk)
            written += len(chunk)
    return records


def parse_only(path: Path) -> float:
    start = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            orjson.loads(line)
            n += 1
    return n / (time.perf_counter() - start)


async def _import(base: str, path: Path) -> tuple[float, dict[str, Any]]:
    async with Api(base) as api:
        await api.signup("imports@bench.example")
        ds = (await api.call("POST", "/v1/datasets", {"name": "bench", "schema": SCHEMA}))["dataset_id"]
        target = await api.call("GET", f"/v1/datasets/{ds}/upload-url/bench.jsonl")
        start = time.perf_counter()
        size = path.stat().st_size
        reply = await send_file(target["upload_url"], path, 0, size, headers={"Content-Type": "application/x-ndjson"})
        if reply.status != 200:
            raise ApiError(reply.status, "put", reply.body[:200].decode(errors="replace"))
        while (imp := await api.call("GET", f"/v1/imports/{target['import_id']}"))["status"] not in TERMINAL:
            await trio.sleep(0.1)
        return time.perf_counter() - start, imp


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "records.jsonl"
    print(f"imports: generating {args.mib} MiB of JSONL ...", flush=True)
    records = generate(path, args.mib)
    base_rates: list[float] = []
    with stores.open_stores(args.store, work) as st:
        rates: dict[str, list[float]] = {store: [] for store in st.names}
        rss: dict[str, list[float]] = {store: [] for store in st.names}
        outcome: dict[str, dict[str, Any]] = {}
        for run in range(args.runs):
            base_rates.append(parse_only(path))
            print(f"  run {run + 1}: parse-only {base_rates[-1]:,.0f} rec/s", flush=True)
            for store in st.order(run):
                with harness.engine(work / f"data{run}-{store}", env=st.env(store), grace=120) as server:
                    elapsed, imp = trio.run(_import, server.base, path)
                    rss[store].append(server.peak_rss_mib())
                rates[store].append((imp["accepted_count"] + imp["rejected_count"]) / elapsed)
                outcome[store] = {k: imp[k] for k in ("status", "accepted_count", "rejected_count")}
                print(f"  run {run + 1}, {store}: engine {rates[store][-1]:,.0f} rec/s, "
                      f"peak RSS {rss[store][-1]:.0f} MiB, {outcome[store]}", flush=True)
    rows = [Row("parse", "baseline: orjson.loads per line, 1 process", "records/s", base_rates, is_baseline=True,
                short="parse-only")]
    for store in st.names:
        ratio = median(rates[store]) / median(base_rates)
        rows.append(Row(st.key("engine", store), st.label(f"engine: PUT + validate + commit, {records:,} records", store),
                        "records/s", rates[store], baseline="parse",
                        note=f"target ≥ 0.25 ({'met' if ratio >= 0.25 else 'not met'})"))
    rows += [Row(st.key("rss", store), st.label("server peak RSS (VmHWM)", store), "MiB", rss[store], chart=False,
                 lower_is_better=True, note="target ≤ 150 MiB") for store in st.names]
    section = Section("imports", st.title(f"Record imports: {args.mib} MiB of JSONL, PUT to terminal status"), rows)
    section.baselines = ["parse-only = orjson.loads of every line of the same file in the benchmark's own process.",
                         *st.baselines()]
    section.notes = [f"last outcome{f' on {store}' if st.several else ''} {outcome[store]}" for store in st.names]
    section.meta = {"mib": args.mib, "runs": args.runs, "records": records, "store": args.store}
    return [section, *stores.versus(section, st, ["engine", "rss"])]


if __name__ == "__main__":
    from bench.__main__ import entry

    sys.exit(entry(["imports", *sys.argv[1:]]))
