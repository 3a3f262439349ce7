"""Pipeline and actor benchmark.

    python bench/pipeline.py [--docs 60] [--actors 10000] [--messages 20000] [--runs 3]

1. **Pipeline throughput**: starts ``ipto serve`` (SQLite + local blobs) as a subprocess,
   uploads a generated mixed corpus (plain text, HTML, PDF, one third each), approves every
   object and times until all are ``active`` (normalize, extract, chunk + keywords +
   embeddings, index). Baseline, same run, same documents: the bare stage functions called
   one after the other in this process (no HTTP, no store, no actors).
2. **Actor memory**: 10,000 live dataset actors (each answered one message and now waits
   in its inbox): RSS and traced Python memory per idle actor.
3. **Message round trip**: ``Supervisor.ask`` to a live actor, against the bare cost of the
   same Trio primitives (a memory-channel request and reply to a task).

Medians with min-max over ``--runs``; ratios against the same-run baselines. It reports,
it never asserts.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upload import api, free_port  # noqa: E402

WORDS = ("harbour ledger invoice vessel cargo tariff quarterly revenue northern region customs manifest "
         "container freight insurance clause delivery schedule port authority warehouse").split()


def paragraph(i: int, n: int = 120) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)) + "."


def corpus(docs: int, work: Path) -> list[tuple[str, str, bytes]]:
    from fpdf import FPDF

    out = []
    for i in range(docs):
        body = "\n\n".join(paragraph(i + p) for p in range(6))
        kind = i % 3
        if kind == 0:
            out.append((f"doc{i}.txt", "text/plain", body.encode()))
        elif kind == 1:
            html = "<html><head><style>p{}</style></head><body>" + "".join(f"<p>{p}</p>" for p in body.split("\n\n")) + "</body></html>"
            out.append((f"doc{i}.html", "text/html", html.encode()))
        else:
            pdf = FPDF()
            pdf.add_page()
            pdf.set_font("Helvetica", size=11)
            pdf.multi_cell(0, 6, body)
            out.append((f"doc{i}.pdf", "application/pdf", bytes(pdf.output())))
    return out


def bare_pipeline(docs: list[tuple[str, str, bytes]], work: Path) -> float:
    """Docs/s of the stage functions alone, sequentially, in this process."""
    from engine.pipeline import stages
    from engine.pipeline.embeddings import load_embedder

    embedder = load_embedder()
    if embedder.available:
        embedder.embed(["warm up"])
    paths = []
    for name, _, data in docs:
        path = work / name
        path.write_bytes(data)
        paths.append(path)
    start = time.perf_counter()
    for path, (_, mime, _) in zip(paths, docs, strict=True):
        kind = stages.normalize(path, mime)
        text = stages.extract(path, kind).text
        chunks = stages.chunk_text(text)
        stages.keywords(text)
        if embedder.available and chunks:
            embedder.embed(chunks)
    return len(docs) / (time.perf_counter() - start)


def engine_pipeline(docs: list[tuple[str, str, bytes]], work: Path) -> tuple[float, float]:
    """Docs/s from the first approval to the last object active, through ``ipto serve``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "IPTO_ADMIN_BOOTSTRAP_EMAIL": "bench@admin.io", "IPTO_ADMIN_BOOTSTRAP_PASSWORD": "bench password",
           "IPTO_LOG_LEVEL": "warning"}
    server = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(work / "data")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        for _ in range(300):
            try:
                api(base, "GET", "/v1/health")
                break
            except OSError:
                time.sleep(0.1)
        owner = api(base, "POST", "/v1/auth/signup", {"email": "p@bench.io", "password": "bench password"})["token"]
        admin = api(base, "POST", "/v1/auth/login", {"email": "bench@admin.io", "password": "bench password"})["token"]
        ds = api(base, "POST", "/v1/datasets", {"name": "bench"}, owner)["dataset_id"]
        # warm the embedding model with one document, outside the timing
        ids = []
        for name, mime, data in [docs[0], *docs]:
            up = api(base, "POST", f"/v1/datasets/{ds}/objects/upload", {"filename": name, "content_type": mime, "size_bytes": len(data)}, owner)
            import urllib.request

            urllib.request.urlopen(urllib.request.Request(up["upload_url"], data=data, method="PUT"), timeout=60).read()
            api(base, "POST", f"/v1/objects/{up['object_id']}/confirm", {}, owner)
            ids.append(up["object_id"])
        api(base, "POST", f"/v1/admin/staged-objects/{ids[0]}/approve", {}, admin)
        while api(base, "GET", f"/v1/datasets/{ds}", token=owner)["active_object_count"] < 1:
            time.sleep(0.05)
        start = time.perf_counter()
        for oid in ids[1:]:
            api(base, "POST", f"/v1/admin/staged-objects/{oid}/approve", {}, admin)
        while True:
            done = api(base, "GET", f"/v1/datasets/{ds}", token=owner)["active_object_count"] - 1
            if done >= len(docs):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        rss = peak_rss_mib(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return len(docs) / elapsed, rss


def peak_rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- actors ----------------------------------------------------------------------------------
from engine.actors.messages import Message  # noqa: E402
from engine.actors.supervisor import Supervisor  # noqa: E402
from engine.config import ActorsConfig  # noqa: E402


@dataclass(frozen=True)
class Ping(Message):
    async def apply(self, ctx: Any) -> int:
        return 1


async def actor_memory(count: int) -> tuple[float, float]:
    """(RSS KiB per idle actor, traced Python KiB per idle actor)."""
    sup = Supervisor(ActorsConfig(idle_seconds=3600.0, inbox_size=64))
    async with sup.running(grace_seconds=1):
        await sup.ask("dset_warm", Ping())
        gc.collect()
        tracemalloc.start()
        before_rss, (before_traced, _) = rss_kib(), tracemalloc.get_traced_memory()
        for i in range(count):
            await sup.ask(f"dset_{i}", Ping())
        gc.collect()
        after_rss, (after_traced, _) = rss_kib(), tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert sup.actor_count == count + 1
    return (after_rss - before_rss) / count, (after_traced - before_traced) / 1024 / count


async def round_trips(messages: int) -> tuple[float, float]:
    """(µs per Supervisor.ask, µs per bare channel request/reply)."""
    sup = Supervisor(ActorsConfig(idle_seconds=3600.0))
    async with sup.running(grace_seconds=1):
        await sup.ask("dset_rt", Ping())
        start = time.perf_counter()
        for _ in range(messages):
            await sup.ask("dset_rt", Ping())
        ask_us = (time.perf_counter() - start) / messages * 1e6

    send, recv = trio.open_memory_channel[Any](64)

    async def echo() -> None:
        async for reply in recv:
            reply.send_nowait(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        start = time.perf_counter()
        for _ in range(messages):
            rs, rr = trio.open_memory_channel[int](1)
            await send.send(rs)
            await rr.receive()
        bare_us = (time.perf_counter() - start) / messages * 1e6
        await send.aclose()
    return ask_us, bare_us


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--actors", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ipto-bench-pipeline-"))
    docs = corpus(args.docs, work)
    bare, engine, rss = [], [], []
    for run in range(args.runs):
        bare.append(bare_pipeline(docs, work))
        docs_s, peak = engine_pipeline(docs, work / f"run{run}")
        engine.append(docs_s)
        rss.append(peak)
        print(f"run {run + 1}: bare stages {bare[-1]:.1f} docs/s, engine {engine[-1]:.1f} docs/s, server peak RSS {peak:.0f} MiB", flush=True)

    per_actor = [trio.run(actor_memory, args.actors) for _ in range(args.runs)]
    trips = [trio.run(round_trips, args.messages) for _ in range(args.runs)]
    subprocess.run(["rm", "-rf", str(work)], check=False)

    b, e = summary(bare), summary(engine)
    rss_per, traced_per = summary([p[0] for p in per_actor]), summary([p[1] for p in per_actor])
    ask, raw = summary([t[0] for t in trips]), summary([t[1] for t in trips])
    print()
    print(f"{'measure':<58} {'median':>10} {'min-max':>17} {'ratio':>7}")
    print(f"{'bare stage functions, sequential (docs/s)':<58} {b['median']:>10.1f} {b['min']:>8.1f}-{b['max']:<8.1f} {1.0:>7.2f}")
    print(f"{'engine: approve -> active, ' + str(args.docs) + ' mixed docs (docs/s)':<58} {e['median']:>10.1f} "
          f"{e['min']:>8.1f}-{e['max']:<8.1f} {e['median'] / b['median']:>7.2f}")
    print(f"{'server peak RSS during pipeline (MiB)':<58} {statistics.median(rss):>10.0f}")
    print(f"{'RSS per idle actor, ' + str(args.actors) + ' live (KiB)':<58} {rss_per['median']:>10.2f} {rss_per['min']:>8.2f}-{rss_per['max']:<8.2f}")
    print(f"{'traced Python memory per idle actor (KiB)':<58} {traced_per['median']:>10.2f} {traced_per['min']:>8.2f}-{traced_per['max']:<8.2f}")
    print(f"{'bare channel request/reply (us)':<58} {raw['median']:>10.1f} {raw['min']:>8.1f}-{raw['max']:<8.1f} {1.0:>7.2f}")
    print(f"{'Supervisor.ask round trip (us)':<58} {ask['median']:>10.1f} {ask['min']:>8.1f}-{ask['max']:<8.1f} {ask['median'] / raw['median']:>7.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "bare_docs_s": b, "engine_docs_s": e, "engine_ratio": e["median"] / b["median"], "server_peak_rss_mib": rss,
        "rss_kib_per_idle_actor": rss_per, "traced_kib_per_idle_actor": traced_per, "ask_us": ask, "bare_channel_us": raw,
    }, indent=2))


if __name__ == "__main__":
    main()
