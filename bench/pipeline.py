"""Pipeline and actors: approve-to-active throughput, idle actor memory, message round trip.

    python -m bench pipeline [--docs 60] [--actors 10000] [--messages 20000] [--runs 3] [--store sqlite|postgres|both]
    python bench/pipeline.py ...        (the same)

1. **Pipeline throughput**: per run a fresh engine (local blobs; SQLite, or a fresh
   PostgreSQL database, see :mod:`bench.stores`; with ``both`` one engine per store, in
   turns) gets a generated mixed corpus (plain text, HTML, PDF, a third each, six
   paragraphs per document) uploaded and confirmed; every object is approved and the
   clock runs until all are ``active`` (normalize, extract, chunk + keywords +
   embeddings, index). The embedding model is warmed with one document before the clock
   starts. Baseline, same run, same documents: the bare stage functions called one after
   the other in this process (no HTTP, no store, no actors).
2. **Actor memory**: ``--actors`` live dataset actors (each answered one message and now
   waits in its inbox): RSS and traced Python memory per idle actor, in this process.
3. **Message round trip**: ``Supervisor.ask`` to a live actor, against the bare cost of the
   same Trio primitives (a memory-channel request and reply to a task).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

if __package__ in (None, ""):  # ``python bench/pipeline.py``: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, stores  # noqa: E402
from bench.client import PASSWORD, Api, ApiError  # noqa: E402
from bench.report import Row, Section  # noqa: E402

ADMIN_EMAIL = "admin@bench.example"

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

    def one(path: Path, mime: str) -> None:
        kind = stages.normalize(path, mime)
        text = stages.extract(path, kind).text
        chunks = stages.chunk_text(text)
        stages.keywords(text)
        if embedder.available and chunks:
            embedder.embed(chunks)

    for i in range(min(3, len(docs))):  # one of each kind first, outside the timing, as the engine is warmed
        one(paths[i], docs[i][1])
    start = time.perf_counter()
    for path, (_, mime, _) in zip(paths, docs, strict=True):
        one(path, mime)
    return len(docs) / (time.perf_counter() - start)


async def _engine_pipeline(base: str, docs: list[tuple[str, str, bytes]]) -> float:
    """Docs/s from the first approval to the last object active, through the engine's API."""
    async with Api(base, connections=4) as owner, Api(base, connections=4) as admin:
        await owner.signup("pipeline@bench.example")
        admin.token = await admin.login(ADMIN_EMAIL, PASSWORD)
        ds = (await owner.datasets(1, "pipeline"))[0]
        ids = []
        for name, mime, data in [docs[0], *docs]:  # the first one again, to warm the model outside the timing
            up = await owner.call("POST", f"/v1/datasets/{ds}/objects/upload", {"filename": name, "content_type": mime,
                                                                              "size_bytes": len(data)})
            reply = await owner.http.put(up["upload_url"], content=data)
            if reply.status_code != 200:
                raise ApiError(reply.status_code, "put")
            await owner.call("POST", f"/v1/objects/{up['object_id']}/confirm", {})
            ids.append(up["object_id"])
        await admin.call("POST", f"/v1/admin/staged-objects/{ids[0]}/approve", {})
        while (await owner.call("GET", f"/v1/datasets/{ds}"))["active_object_count"] < 1:
            await trio.sleep(0.05)
        start = time.perf_counter()
        for oid in ids[1:]:
            await admin.call("POST", f"/v1/admin/staged-objects/{oid}/approve", {})
        while (await owner.call("GET", f"/v1/datasets/{ds}"))["active_object_count"] - 1 < len(docs):
            await trio.sleep(0.05)
        return len(docs) / (time.perf_counter() - start)


def engine_pipeline(docs: list[tuple[str, str, bytes]], work: Path, store_env: dict[str, str]) -> tuple[float, float]:
    env = {"IPTO_ADMIN_BOOTSTRAP_EMAIL": ADMIN_EMAIL, "IPTO_ADMIN_BOOTSTRAP_PASSWORD": PASSWORD, **store_env}
    with harness.engine(work / "data", env=env) as server:
        docs_s = trio.run(_engine_pipeline, server.base, docs)
        return docs_s, server.peak_rss_mib()


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- actors (in this process) -----------------------------------------------------------------
def _ping() -> Any:
    """A message that answers 1 (the engine is imported here, not when the harness starts)."""
    from engine.actors.messages import Message

    @dataclass(frozen=True)
    class Ping(Message):
        async def apply(self, ctx: Any) -> int:
            return 1

    return Ping()


def _supervisor(**kw: Any) -> Any:
    from engine.actors.supervisor import Supervisor
    from engine.config import ActorsConfig

    return Supervisor(ActorsConfig(idle_seconds=3600.0, **kw))


async def actor_memory(count: int) -> tuple[float, float]:
    """(RSS KiB per idle actor, traced Python KiB per idle actor)."""
    sup, ping = _supervisor(inbox_size=64), _ping()
    async with sup.running(grace_seconds=1):
        await sup.ask("dset_warm", ping)
        gc.collect()
        tracemalloc.start()
        before_rss, (before_traced, _) = rss_kib(), tracemalloc.get_traced_memory()
        for i in range(count):
            await sup.ask(f"dset_{i}", ping)
        gc.collect()
        after_rss, (after_traced, _) = rss_kib(), tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert sup.actor_count == count + 1
    return (after_rss - before_rss) / count, (after_traced - before_traced) / 1024 / count


async def round_trips(messages: int) -> tuple[float, float]:
    """(µs per Supervisor.ask, µs per bare channel request/reply)."""
    sup, ping = _supervisor(), _ping()
    async with sup.running(grace_seconds=1):
        await sup.ask("dset_rt", ping)
        start = time.perf_counter()
        for _ in range(messages):
            await sup.ask("dset_rt", ping)
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


def _quiet_engine_logs() -> None:
    """The in-process supervisor logs through structlog: warnings only, as the servers run."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--docs", type=int, default=30 if quick else 60)
    parser.add_argument("--actors", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=2 if quick else 3)
    stores.add_argument(parser)


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    work.mkdir(parents=True, exist_ok=True)
    print(f"pipeline: {args.docs} docs, {args.actors} actors, {args.messages} messages, {args.runs} runs", flush=True)
    docs = corpus(args.docs, work)
    bare: list[float] = []
    with stores.open_stores(args.store, work) as st:
        engine: dict[str, list[float]] = {store: [] for store in st.names}
        rss: dict[str, list[float]] = {store: [] for store in st.names}
        for run in range(args.runs):
            bare.append(bare_pipeline(docs, work))
            print(f"  run {run + 1}: bare stages {bare[-1]:.1f} docs/s", flush=True)
            for store in st.order(run):
                docs_s, peak = engine_pipeline(docs, work / f"run{run}-{store}", st.env(store))
                engine[store].append(docs_s)
                rss[store].append(peak)
                print(f"  run {run + 1}, {store}: engine {docs_s:.1f} docs/s, server peak RSS {peak:.0f} MiB", flush=True)
    _quiet_engine_logs()
    per_actor = [trio.run(actor_memory, args.actors) for _ in range(args.runs)]
    trips = [trio.run(round_trips, args.messages) for _ in range(args.runs)]
    rows = [
        Row("bare", "bare stage functions, sequential, 1 process", "docs/s", bare, is_baseline=True, short="bare stages"),
        *(Row(st.key("engine", store), st.label(f"engine: approve → active, {args.docs} mixed docs", store), "docs/s",
              engine[store], baseline="bare") for store in st.names),
        *(Row(st.key("rss", store), st.label("server peak RSS during the pipeline", store), "MiB", rss[store], chart=False,
              lower_is_better=True, note="torch + model") for store in st.names),
        Row("actor_rss", f"RSS per idle actor, {args.actors:,} live", "KiB", [p[0] for p in per_actor], chart=False,
            lower_is_better=True),
        Row("actor_traced", "traced Python memory per idle actor", "KiB", [p[1] for p in per_actor], chart=False,
            lower_is_better=True),
        Row("channel", "bare trio channel request/reply", "µs", [t[1] for t in trips], is_baseline=True, lower_is_better=True,
            short="bare channel"),
        Row("ask", "Supervisor.ask round trip", "µs", [t[0] for t in trips], baseline="channel", lower_is_better=True),
    ]
    section = Section("pipeline", st.title("Pipeline and actors"), rows)
    section.baselines = [
        "bare stages = normalize, extract, chunk, keywords and embed of the same documents called in the benchmark's "
        "own process, one after the other (no HTTP, store, actors or threads).",
        "bare channel = a trio memory-channel request and reply to a task: the floor under an actor message.",
        *st.baselines(),
    ]
    section.notes = ["the µs rows are costs: a ratio above 1 is slower than the baseline.",
                     *(["the actor rows run in the benchmark's own process, without a store."] if st.postgres else [])]
    section.meta = {"docs": args.docs, "actors": args.actors, "messages": args.messages, "runs": args.runs,
                    "store": args.store}
    return [section, *stores.versus(section, st, ["engine", "rss"])]


if __name__ == "__main__":
    from bench.__main__ import entry

    sys.exit(entry(["pipeline", *sys.argv[1:]]))
