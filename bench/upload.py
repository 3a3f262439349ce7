"""Upload data path: our presigned PUT against a tus server and against the machine itself.

    python -m bench upload [--size-mib 1024] [--files 64] [--file-mib 16] [--concurrency 8] [--runs 5]
                           [--store sqlite|postgres|both]
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
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

if __package__ in (None, ""):  # ``python bench/upload.py``: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, peer, stores  # noqa: E402
from bench.client import Api, ApiError, send_file  # noqa: E402
from bench.report import Row, Section, median  # noqa: E402

MiB = harness.MiB


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--size-mib", type=int, default=1024, help="the single file")
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--file-mib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true", help="skip the tus peer (no node/npm)")
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


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    work.mkdir(parents=True, exist_ok=True)
    use_peer = not args.no_peer
    node = peer.install() if use_peer else ""
    big = work / "big.bin"
    print(f"upload: generating {args.size_mib} MiB of random data ...", flush=True)
    harness.random_file(big, args.size_mib)
    size = args.size_mib * MiB
    big_sha = harness.sha256_file(big)
    file_bytes = args.file_mib * MiB
    slices = [(i * file_bytes) % (size - file_bytes + 1) for i in range(args.files)]
    slice_sha = [harness.sha256_file(big, off, file_bytes) for off in slices]
    env = {"IPTO_UPLOADS_MULTIPART_THRESHOLD_BYTES": str(5 * 1024 * MiB)}
    tus_dir = work / "tus-files"
    with stores.open_stores(args.store, work) as st, contextlib.ExitStack() as stack:
        figures: dict[str, list[float]] = {k: [] for k in ("physical", "tus_single", "tus_single_sync", "tus_multi")}
        figures |= {st.key(k, store): [] for k in ("ours_single", "ours_multi") for store in st.names}
        engines = {store: stack.enter_context(harness.engine(work / f"data-{store}", env={**env, **st.env(store)}))
                   for store in st.names}
        tus = stack.enter_context(peer.tus_server(tus_dir, work / "tus.log")) if use_peer else None

        async def setup(base: str) -> tuple[str, str]:
            async with Api(base) as api:
                token = await api.signup("upload@bench.example")
                return token, (await api.datasets(1, "upload"))[0]

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

                for ours, theirs in ((ours_single, tus_single), (ours_multi, tus_multi)):
                    contenders: list[Callable[[], Awaitable[None]]] = [functools.partial(ours, store) for store in st.names]
                    contenders += [theirs] if use_peer else []
                    k = run % len(contenders)  # who goes first rotates between runs
                    for step in contenders[k:] + contenders[:k]:
                        await step()

        for run in range(args.runs):
            figures["physical"].append(physical(big, work / "copy.bin"))
            trio.run(measure, run)
            last = {k: f"{v[-1]:.0f}" for k, v in figures.items() if len(v) > run}
            print(f"  run {run + 1}: " + ", ".join(f"{k} {v} MiB/s" for k, v in last.items()), flush=True)
        engine_rss = {store: engine.peak_rss_mib() for store, engine in engines.items()}
        tus_rss = tus.peak_rss_mib() if tus else float("nan")

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
    return [section, *stores.versus(section, st, ["ours_single", "ours_multi", "engine_rss"])]


if __name__ == "__main__":
    from bench.__main__ import entry

    sys.exit(entry(["upload", *sys.argv[1:]]))
