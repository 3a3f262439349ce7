"""Upload data path: our presigned PUT against a tus server and against the machine itself.

    python -m bench upload [--size-mib 1024] [--files 64] [--file-mib 16] [--concurrency 8] [--runs 5]
                           [--small 2000x100KiB,5000x10KiB] [--small-concurrency 32,128] [--spread 16]
                           [--shapes single,many,small] [--store sqlite|postgres|both]
    python bench/upload.py ...        (the same)

Starts the engine (local blobs; single-part up to 5 GiB, so the 1 GiB file is one PUT; on
SQLite or PostgreSQL, see :mod:`bench.stores`, and with ``both`` one engine per store) and
the tus peer (:mod:`bench.peer`), then per run, each preceded by ``sync``:

* physical baseline: read + SHA-256 + write + fsync of the same 1 GiB in this one process
  (the least a store that verifies checksums must do, with no HTTP at all);
* one ``--size-mib`` file: ours = initiate + PUT + confirm (the server hashes while it
  writes, fsyncs, and checks the declared SHA-256 on confirm); tus = creation ``POST`` +
  one ``PATCH`` with the whole body (no checksum, no fsync); and tus again followed by
  ``sync`` (its bytes on disk, as ours are when confirm answers);
* ``--files`` x ``--file-mib`` slices of the same file, ``--concurrency`` at a time, both ways;
* small files (:mod:`bench.smallfiles`): each ``--small`` shape (COUNTxSIZE, sizes in bytes,
  KiB or MiB) at each ``--small-concurrency``, every client on its own keep-alive connection:
  ours into **one dataset**, ours spread over ``--spread`` datasets, and tus, on the same
  files;
* peak RSS (VmHWM) of both servers over the whole run.

Bodies go out with ``os.sendfile`` from the page cache (:func:`bench.client.send_file`), the
same sender for both servers, so the figures are the servers'. Which server goes first
rotates between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

if __package__ in (None, ""):  # ``python bench/upload.py``: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, peer, smallfiles, stores  # noqa: E402
from bench.client import Api, ApiError, send_file  # noqa: E402
from bench.report import Row, Section, median  # noqa: E402

MiB = harness.MiB


def _seaweedfs(stack: contextlib.ExitStack, work: Path) -> dict[str, str]:
    """A SeaweedFS S3 server for the block (tests/s3server.py); the engine's environment for it."""
    from tests.s3server import start_seaweedfs

    print("upload: starting SeaweedFS (S3) ...", flush=True)
    s3 = start_seaweedfs(work / "seaweedfs")
    stack.callback(s3.stop)
    return {"IPTO_BLOBS_BACKEND": "s3", "IPTO_BLOBS_S3_ENDPOINT": s3.endpoint, "IPTO_BLOBS_S3_REGION": s3.region,
            "IPTO_BLOBS_S3_BUCKET": s3.bucket, "IPTO_BLOBS_S3_ACCESS_KEY": s3.access_key,
            "IPTO_BLOBS_S3_SECRET_KEY": s3.secret_key}


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--size-mib", type=int, default=1024, help="the single file")
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--file-mib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--small", default="1000x100KiB,2000x10KiB" if quick else "2000x100KiB,5000x10KiB",
                        help="small-file shapes, COUNTxSIZE (bytes, KiB or MiB), comma-separated")
    parser.add_argument("--small-concurrency", default="32,128", help="uploads at a time for the small files")
    parser.add_argument("--spread", type=int, default=16, help="datasets of the small files' spread case (0: none)")
    parser.add_argument("--shapes", default="single,many,small", help="which shapes: single, many, small")
    parser.add_argument("--no-peer", action="store_true", help="skip the tus peer (no node/npm)")
    parser.add_argument("--workers", type=int, default=None,
                        help="the engine's http.workers (default: the engine's own default; 0: one per core it may use)")
    parser.add_argument("--engine-cpus", default=None, help="run the engine under taskset -c CPUS (e.g. 0 for one core)")
    parser.add_argument("--s3", action="store_true",
                        help="the engine's blobs on a SeaweedFS S3 server started here (PUTs go to it, not the engine)")
    stores.add_argument(parser)


def physical(src: Path, dst: Path) -> float:
    """MiB/s of read + SHA-256 + write + fsync, in this process."""
    os.sync()
    start = time.perf_counter()
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(MiB):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    elapsed = time.perf_counter() - start
    dst.unlink()
    return src.stat().st_size / MiB / elapsed


async def ours_one(api: Api, dataset: str, path: Path, offset: int, length: int, sha: str) -> str:
    up = await api.call("POST", f"/v1/datasets/{dataset}/objects/upload", {
        "filename": "bench.pdf", "content_type": "application/pdf", "size_bytes": length, "checksum_sha256": sha})
    reply = await send_file(up["upload_url"], path, offset, length)
    if reply.status != 200:
        raise ApiError(reply.status, "put", reply.body[:200].decode(errors="replace"))
    await api.call("POST", f"/v1/objects/{up['object_id']}/confirm", {})
    return str(up["object_id"])


async def _many(fn: Callable[[int, int, str], Awaitable[str]], jobs: list[tuple[int, int, str]], concurrency: int) -> list[str]:
    limiter = trio.CapacityLimiter(concurrency)
    out: list[str] = []

    async def one(job: tuple[int, int, str]) -> None:
        async with limiter:
            out.append(await fn(*job))

    async with trio.open_nursery() as nursery:
        for job in jobs:
            nursery.start_soon(one, job)
    return out


def _small_jobs(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    """``(count, size, concurrency)`` of every small-file measurement."""
    if "small" not in args.shapes.split(","):
        return []
    levels = [int(c) for c in args.small_concurrency.split(",") if c.strip()]
    return [(count, size, c) for count, size in smallfiles.parse_files(args.small) for c in levels]


def _small_key(count: int, size: int, c: int, who: str) -> str:
    return f"small_{count}x{size}_c{c}_{who}"


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    work.mkdir(parents=True, exist_ok=True)
    shapes = set(args.shapes.split(","))
    large = bool(shapes & {"single", "many"})
    use_peer = not args.no_peer
    node = peer.install() if use_peer else ""
    big = work / "big.bin"
    small_jobs = _small_jobs(args)
    small_bytes = max((count * (size + 4096) for count, size, _ in small_jobs), default=0)
    source_mib = args.size_mib if large else max(8, -(-small_bytes // MiB) + 1)
    print(f"upload: generating {source_mib} MiB of random data ...", flush=True)
    harness.random_file(big, source_mib)
    size = source_mib * MiB
    big_sha = harness.sha256_file(big) if "single" in shapes else ""
    file_bytes = args.file_mib * MiB
    slices = [(i * file_bytes) % (size - file_bytes + 1) for i in range(args.files)] if "many" in shapes else []
    slice_sha = [harness.sha256_file(big, off, file_bytes) for off in slices]
    small_files = {}
    for count, small_size in {(count, small_size) for count, small_size, _ in small_jobs}:
        # distinct slices (a 4 KiB stride apart), so no two files are alike
        offsets = [(i * (small_size + 4096)) % (size - small_size) for i in range(count)]
        small_files[count, small_size] = smallfiles.Files(
            big, small_size, offsets, [harness.sha256_file(big, off, small_size) for off in offsets])
    env = {"IPTO_UPLOADS_MULTIPART_THRESHOLD_BYTES": str(5 * 1024 * MiB)}
    if args.workers is not None:
        env["IPTO_HTTP_WORKERS"] = str(args.workers)
    tus_dir = work / "tus-files"
    small_results: dict[str, list[smallfiles.Result]] = {}
    with stores.open_stores(args.store, work) as st, contextlib.ExitStack() as stack:
        if args.s3:
            env |= _seaweedfs(stack, work)
        figures: dict[str, list[float]] = {k: [] for k in ("physical", "tus_single", "tus_single_sync", "tus_multi")}
        figures |= {st.key(k, store): [] for k in ("ours_single", "ours_multi") for store in st.names}
        engines = {store: stack.enter_context(harness.engine(work / f"data-{store}", env={**env, **st.env(store)},
                                                              cpus=args.engine_cpus))
                   for store in st.names}
        tus = stack.enter_context(peer.tus_server(tus_dir, work / "tus.log")) if use_peer else None

        async def setup(base: str) -> tuple[str, str, list[str]]:
            async with Api(base) as api:
                token = await api.signup("upload@bench.example")
                spread = await api.datasets(args.spread, "spread") if small_jobs and args.spread else []
                return token, (await api.datasets(1, "upload"))[0], spread

        accounts = {store: trio.run(setup, engine.base) for store, engine in engines.items()}

        async def measure(run: int) -> None:
            async with contextlib.AsyncExitStack() as clients:
                apis = {store: await clients.enter_async_context(
                    Api(engines[store].base, token=accounts[store][0], connections=args.concurrency + 2))
                    for store in st.names}
                tapi = await clients.enter_async_context(Api(tus.base, connections=args.concurrency + 2)) if tus else None

                async def ours_single(store: str) -> None:
                    api, dataset = apis[store], accounts[store][1]
                    os.sync()
                    t0 = time.perf_counter()
                    oid = await ours_one(api, dataset, big, 0, size, big_sha)
                    figures[st.key("ours_single", store)].append(args.size_mib / (time.perf_counter() - t0))
                    await api.call("DELETE", f"/v1/objects/{oid}")

                async def tus_single() -> None:
                    assert tapi is not None
                    for key, durable in (("tus_single", False), ("tus_single_sync", True)):
                        os.sync()
                        t0 = time.perf_counter()
                        await peer.tus_upload(tapi, big, 0, size)
                        if durable:
                            await trio.to_thread.run_sync(os.sync)
                        figures[key].append(args.size_mib / (time.perf_counter() - t0))
                        peer.clear(tus_dir)

                async def ours_multi(store: str) -> None:
                    api, dataset = apis[store], accounts[store][1]
                    os.sync()
                    t0 = time.perf_counter()
                    ids = await _many(lambda off, n, sha: ours_one(api, dataset, big, off, n, sha),
                                      [(off, file_bytes, sha) for off, sha in zip(slices, slice_sha, strict=True)],
                                      args.concurrency)
                    figures[st.key("ours_multi", store)].append(args.files * args.file_mib / (time.perf_counter() - t0))
                    for oid in ids:
                        await api.call("DELETE", f"/v1/objects/{oid}")

                async def tus_multi() -> None:
                    assert tapi is not None
                    os.sync()
                    t0 = time.perf_counter()
                    await _many(lambda off, n, _sha: peer.tus_upload(tapi, big, off, n),
                                [(off, file_bytes, "") for off in slices], args.concurrency)
                    figures["tus_multi"].append(args.files * args.file_mib / (time.perf_counter() - t0))
                    peer.clear(tus_dir)

                def small(count: int, small_size: int, c: int) -> list[Callable[[], Awaitable[None]]]:
                    files = small_files[count, small_size]

                    async def ours(store: str, spread: bool) -> None:
                        token, one, many = accounts[store]
                        os.sync()
                        result, _ = await smallfiles.ours(files, c, engines[store].base, token, many if spread else [one],
                                                          [engines[store].pid])
                        small_results.setdefault(st.key(_small_key(count, small_size, c, "spread" if spread else "one"),
                                                        store), []).append(result)

                    async def theirs() -> None:
                        assert tus is not None
                        os.sync()
                        result = await smallfiles.tus(files, c, tus.base, [tus.pid])
                        small_results.setdefault(_small_key(count, small_size, c, "tus"), []).append(result)
                        peer.clear(tus_dir)

                    out: list[Callable[[], Awaitable[None]]] = [functools.partial(ours, store, False) for store in st.names]
                    if args.spread:
                        out += [functools.partial(ours, store, True) for store in st.names]
                    return out + ([theirs] if use_peer else [])

                rounds: list[list[Callable[[], Awaitable[None]]]] = []
                if "single" in shapes:
                    rounds.append([functools.partial(ours_single, store) for store in st.names]
                                  + ([tus_single] if use_peer else []))
                if "many" in shapes:
                    rounds.append([functools.partial(ours_multi, store) for store in st.names]
                                  + ([tus_multi] if use_peer else []))
                rounds += [small(count, small_size, c) for count, small_size, c in small_jobs]
                for contenders in rounds:
                    k = run % len(contenders)  # who goes first rotates between runs
                    for step in contenders[k:] + contenders[:k]:
                        await step()

        for run in range(args.runs):
            if large:
                figures["physical"].append(physical(big, work / "copy.bin"))
            trio.run(measure, run)
            last = {k: f"{v[-1]:.0f} MiB/s" for k, v in figures.items() if len(v) > run}
            last |= {k: f"{v[-1].rate:.0f} files/s" for k, v in small_results.items() if len(v) > run}
            print(f"  run {run + 1}: " + ", ".join(f"{k} {v}" for k, v in last.items()), flush=True)
        engine_rss = {store: engine.peak_rss_mib() for store, engine in engines.items()}
        tus_rss = tus.peak_rss_mib() if tus else float("nan")

    sections = []
    if large:
        section = _large_section(args, st, figures, engine_rss, tus_rss, node, use_peer)
        sections += [section, *stores.versus(section, st, ["ours_single", "ours_multi", "engine_rss"])]
    if small_jobs:
        sections.append(_small_section(args, st, small_jobs, small_results, engine_rss, tus_rss, node, use_peer))
    return sections


def _small_section(args: argparse.Namespace, st: stores.Stores, jobs: list[tuple[int, int, int]],
                   results: dict[str, list[smallfiles.Result]], engine_rss: dict[str, float], tus_rss: float, node: str,
                   use_peer: bool) -> Section:
    def row(key: str, label: str, baseline: str | None = None, note: str = "", is_baseline: bool = False,
            short: str = "") -> Row:
        res = results[key]
        errors = sum((r.errors for r in res), start=Counter())
        mib = median([r.mib_s for r in res])
        note = f"{mib:.1f} MiB/s" + (f"; {note}" if note else "")
        if errors:
            note += "; errors " + ", ".join(f"{k}×{v}" for k, v in sorted(errors.items()))
        return Row(key, label, "files/s", [r.rate for r in res], baseline=baseline, is_baseline=is_baseline, short=short,
                   p50=[r.pct_ms(0.5) for r in res], p99=[r.pct_ms(0.99) for r in res], note=note,
                   extra={"server_cpu": [r.server_cpu for r in res], "client_cpu": [r.client_cpu for r in res],
                          "errors": dict(errors), "mib_s": [r.mib_s for r in res]})

    rows: list[Row] = []
    for count, size, c in jobs:
        shape = f"{count:,} × {smallfiles.size_label(size)}, {c} at a time"
        tus_key = _small_key(count, size, c, "tus")
        if use_peer:
            rows.append(row(tus_key, f"tus: {shape}", is_baseline=True, short="tus"))
        for store in st.names:
            one = st.key(_small_key(count, size, c, "one"), store)
            rows.append(row(one, st.label(f"ours: {shape}, one dataset", store), tus_key if use_peer else None,
                            "÷ tus; target ≥ 1.0" if use_peer else ""))
            if args.spread:
                spread = st.key(_small_key(count, size, c, "spread"), store)
                rows.append(row(spread, st.label(f"ours: {shape}, spread over {args.spread} datasets", store),
                                tus_key if use_peer else None, "÷ tus"))
                rows.append(Row(f"{one}_vs_spread", st.label(f"ours: {shape}, one dataset ÷ spread over {args.spread}", store),
                                "files/s", [r.rate for r in results[one]], base_values=[r.rate for r in results[spread]],
                                chart=False, note="target ≥ 0.9"))
    rows += [Row(st.key("small_engine_rss", store), st.label("engine server peak RSS (whole upload run)", store), "MiB",
                 [engine_rss[store]], chart=False, lower_is_better=True) for store in st.names]
    if use_peer:
        rows.append(Row("small_tus_rss", "tus server peak RSS (node)", "MiB", [tus_rss], chart=False, lower_is_better=True))
    section = Section("upload_small", st.title("Small files into one dataset: ours vs tus, same files, same run"), rows)
    section.baselines = [
        f"tus = @tus/server {peer.PACKAGES['@tus/server']} + @tus/file-store {peer.PACKAGES['@tus/file-store']} "
        f"(node {node}): creation POST + one PATCH per file, no checksum, no fsync; ours = initiate (SHA-256 declared) "
        "+ presigned PUT + confirm per file, verified and on disk when confirm answers.",
    ] if use_peer else []
    section.baselines += st.baselines()
    section.notes = [
        "every client keeps one keep-alive connection (bench/client.py Conn) for all its requests, to either server; "
        "bodies are read with os.pread from the page cache; files are distinct slices of one random file.",
        f"'spread' sends upload k to dataset k mod {args.spread}; 'one dataset ÷ spread' is the ratio of the medians.",
        "server CPU: cores busy on average over the pass (1.00 = one core), the engine's every process.",
        "left out: TLS, clients on other machines (here the client shares the 2 cores), the pipeline after approval.",
    ]
    section.meta = {"small": args.small, "small_concurrency": args.small_concurrency, "spread": args.spread,
                    "runs": args.runs, "store": args.store}
    return section


def _large_section(args: argparse.Namespace, st: stores.Stores, figures: dict[str, list[float]],
                   engine_rss: dict[str, float], tus_rss: float, node: str, use_peer: bool) -> Section:
    def vs_physical(key: str) -> str:
        return f"{median(figures[key]) / median(figures['physical']):.2f}× physical"

    one, many = f"{args.size_mib} MiB", f"{args.files} × {args.file_mib} MiB, {args.concurrency} at a time"

    def ours_rows(key: str, label: str, baseline: str, note: Callable[[str], str]) -> list[Row]:
        """``key``'s row on each store, divided by ``baseline``, with ``note(row key)`` beside it."""
        return [Row(st.key(key, store), st.label(label, store), "MiB/s", figures[st.key(key, store)], baseline=baseline,
                    note=note(st.key(key, store))) for store in st.names]

    rss_rows = [Row(st.key("engine_rss", store), st.label("engine server peak RSS", store), "MiB", [engine_rss[store]],
                    baseline="tus_rss" if use_peer else None, chart=False, lower_is_better=True, note="target ≤ 120 MiB")
                for store in st.names]
    rows = [Row("physical", "physical: read + SHA-256 + write + fsync, 1 process", "MiB/s", figures["physical"],
                is_baseline=True, short="physical")]
    if use_peer:
        rows += [
            Row("tus_single", f"tus: {one}, POST + 1 PATCH", "MiB/s", figures["tus_single"], baseline="physical", short="tus"),
            Row("tus_single_sync", f"tus: {one}, POST + 1 PATCH, then sync", "MiB/s", figures["tus_single_sync"],
                baseline="physical", chart=False, note="durable like ours"),
            *ours_rows("ours_single", f"ours: {one}, initiate + PUT + confirm", "tus_single",
                       lambda key: f"÷ tus; {vs_physical(key)}; target ≥ 0.8× physical"),
            Row("tus_multi", f"tus: {many}", "MiB/s", figures["tus_multi"], baseline="physical", short="tus"),
            *ours_rows("ours_multi", f"ours: {many}", "tus_multi", lambda key: f"÷ tus; {vs_physical(key)}"),
            Row("tus_rss", "tus server peak RSS (node)", "MiB", [tus_rss], chart=False, lower_is_better=True, short="tus"),
            *rss_rows,
        ]
    else:
        rows += [*ours_rows("ours_single", f"ours: {one}, initiate + PUT + confirm", "physical", lambda _key: "target ≥ 0.8"),
                 *ours_rows("ours_multi", f"ours: {many}", "physical", lambda _key: ""), *rss_rows]
    section = Section("upload", st.title("Upload data path: ours vs tus vs the machine"), rows)
    section.baselines = [
        "physical = read + SHA-256 + write + fsync of the same bytes in the benchmark's own process, no HTTP.",
        f"tus = @tus/server {peer.PACKAGES['@tus/server']} + @tus/file-store {peer.PACKAGES['@tus/file-store']} "
        f"(node {node}), stock options, creation + one PATCH with the whole body; it neither hashes nor fsyncs. "
        "Our rows are divided by the tus row of the same shape.",
    ] if use_peer else ["physical = read + SHA-256 + write + fsync of the same bytes in the benchmark's own process."]
    section.baselines += st.baselines()
    section.notes = ["both servers receive bodies from the same os.sendfile client; our path also computes SHA-256, "
                     "checks the declared one on confirm, and fsyncs before answering."]
    section.meta = {k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
    return section




if __name__ == "__main__":
    from bench.__main__ import entry

    sys.exit(entry(["upload", *sys.argv[1:]]))
