"""Upload data-path benchmark: our presigned PUT against the machine's own ceiling.

    python bench/upload.py [--size-mib 1024] [--files 64] [--file-mib 16] [--concurrency 8] [--runs 3]

It starts ``ipto serve`` as a subprocess on loopback (embedded SQLite + local blobs), then
measures, in the same run:

* baseline: read + SHA-256 + write + fsync of the same bytes in this one Python process
  (what any verifying store has to do at least, without HTTP);
* single stream: one ``--size-mib`` file, initiate + PUT + confirm (single part);
* concurrent: ``--files`` x ``--file-mib`` files, ``--concurrency`` at a time;
* the server's peak RSS (VmHWM) over everything above.

The client sends with ``socket.sendfile`` (zero-copy), so the figures are the server's,
not a Python client's. Medians over ``--runs`` with min-max spread; ratios are against the
baseline of the same run. Nothing here asserts: it reports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["data"]


def put_file(url: str, path: Path, offset: int, length: int) -> None:
    """PUT ``length`` bytes of ``path`` from ``offset`` with zero-copy sendfile."""
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port)) as sock, open(path, "rb") as fh:
        head = f"PUT {u.path}?{u.query} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode())
        sock.sendfile(fh, offset, length)
        reply = sock.makefile("rb").readline()
        if b" 200 " not in reply:
            raise RuntimeError(f"PUT failed: {reply!r}")


def sha256_range(path: Path, offset: int, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = length
        while left:
            chunk = fh.read(min(4 * MiB, left))
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def baseline(src: Path, dst: Path) -> float:
    """MiB/s of read + SHA-256 + write + fsync, in this process."""
    os.sync()  # start from a clean disk queue, like the uploads do
    start = time.perf_counter()
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(MiB):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    elapsed = time.perf_counter() - start
    size = src.stat().st_size
    dst.unlink()
    return size / MiB / elapsed


def upload_one(base: str, token: str, dataset: str, path: Path, offset: int, length: int, checksum: str) -> str:
    up = api(base, "POST", f"/v1/datasets/{dataset}/objects/upload", {
        "filename": "bench.bin", "content_type": "application/pdf", "size_bytes": length, "checksum_sha256": checksum}, token)
    put_file(up["upload_url"], path, offset, length)
    api(base, "POST", f"/v1/objects/{up['object_id']}/confirm", {}, token)
    return str(up["object_id"])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--file-mib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "upload.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ipto-bench-"))
    big = work / "big.bin"
    print(f"generating {args.size_mib} MiB of random data in {work} ...", flush=True)
    with open(big, "wb") as fh:
        for _ in range(args.size_mib):
            fh.write(os.urandom(MiB))
    big_sha = sha256_range(big, 0, args.size_mib * MiB)
    file_bytes = args.file_mib * MiB
    small = [(i * file_bytes % (args.size_mib * MiB - file_bytes + 1)) for i in range(args.files)]
    small_sha = [sha256_range(big, off, file_bytes) for off in small]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "IPTO_UPLOADS_MULTIPART_THRESHOLD_BYTES": str(5 * 1024 * MiB), "IPTO_LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(work / "data")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
    )
    try:
        for _ in range(200):
            try:
                api(base, "GET", "/v1/health")
                break
            except OSError:
                time.sleep(0.1)
        token = api(base, "POST", "/v1/auth/signup", {"email": "bench@example.com", "password": "bench password"})["token"]
        dataset = api(base, "POST", "/v1/datasets", {"name": "bench"}, token)["dataset_id"]

        base_rates, single_rates, multi_rates = [], [], []
        for run in range(args.runs):
            base_rates.append(baseline(big, work / "copy.bin"))

            os.sync()
            start = time.perf_counter()
            oid = upload_one(base, token, dataset, big, 0, args.size_mib * MiB, big_sha)
            single_rates.append(args.size_mib / (time.perf_counter() - start))
            api(base, "DELETE", f"/v1/objects/{oid}", token=token)

            os.sync()
            start = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                ids = list(pool.map(lambda i: upload_one(base, token, dataset, big, small[i], file_bytes, small_sha[i]), range(args.files)))
            multi_rates.append(args.files * args.file_mib / (time.perf_counter() - start))
            for oid in ids:
                api(base, "DELETE", f"/v1/objects/{oid}", token=token)
            print(f"run {run + 1}: baseline {base_rates[-1]:.0f} MiB/s, single {single_rates[-1]:.0f} MiB/s, "
                  f"{args.concurrency}-concurrent {multi_rates[-1]:.0f} MiB/s", flush=True)
        rss = peak_rss_mib(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        subprocess.run(["rm", "-rf", str(work)], check=False)

    b, s, m = summary(base_rates), summary(single_rates), summary(multi_rates)
    rows = [
        ("baseline: read+sha256+write+fsync (1 process)", b, 1.0),
        (f"single stream, {args.size_mib} MiB, initiate+PUT+confirm", s, s["median"] / b["median"]),
        (f"{args.files} x {args.file_mib} MiB, {args.concurrency} concurrent", m, m["median"] / b["median"]),
    ]
    print()
    print(f"{'measure':<52} {'median MiB/s':>12} {'min-max':>13} {'x baseline':>10}")
    for name, stats, ratio in rows:
        print(f"{name:<52} {stats['median']:>12.0f} {stats['min']:>6.0f}-{stats['max']:<6.0f} {ratio:>10.2f}")
    print(f"{'server peak RSS (VmHWM)':<52} {rss:>9.0f} MiB   (target <= 120 MiB)")
    print(f"single-stream ratio {s['median'] / b['median']:.2f} (target >= 0.80)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "baseline_mib_s": b, "single_mib_s": s, "concurrent_mib_s": m, "server_peak_rss_mib": rss,
        "single_ratio": s["median"] / b["median"], "concurrent_ratio": m["median"] / b["median"], "args": vars(args) | {"json": str(args.json)},
    }, indent=2))


if __name__ == "__main__":
    main()
