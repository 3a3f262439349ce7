"""Record-import benchmark: a generated JSONL file through upload URL, PUT and processing.

    python bench/imports.py [--mib 1024] [--runs 1]

Generates ``--mib`` of JSONL (records of ~500 bytes, ~1% invalid against the schema),
starts ``ipto serve`` (SQLite + local blobs) and measures records per second end to end:
from the PUT of the file to the import's terminal status (every record parsed, validated,
and committed in checkpointed batches). Baseline, same run, same file: ``orjson.loads`` of
every line in this one process, nothing else. Also the server's peak RSS (VmHWM).
Medians with min-max over ``--runs``; it reports, it never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upload import api, free_port, peak_rss_mib  # noqa: E402

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


def generate(path: Path, mib: int) -> int:
    """Write about ``mib`` MiB of JSONL; return the record count."""
    target = mib * 1024 * 1024
    bio = "lorem ipsum dolor sit amet consectetur adipiscing elit " * 5
    written = records = 0
    with open(path, "wb") as fh:
        while written < target:
            lines = []
            for _ in range(1000):
                age = -1 if records % 100 == 42 else records % 90  # ~1% break "minimum: 0"
                rec = {"id": records, "name": f"person {records}", "email": f"p{records}@example.com", "age": age,
                       "score": records * 0.37 % 100, "active": records % 2 == 0, "tags": ["alpha", "beta", "gamma"],
                       "bio": bio[: 180 + records % 60]}
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


def put_file(url: str, path: Path) -> None:
    u = urlsplit(url)
    size = path.stat().st_size
    with socket.create_connection((u.hostname, u.port)) as sock, open(path, "rb") as fh:
        sock.sendall(f"PUT {u.path}?{u.query} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Length: {size}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        sock.sendfile(fh, 0, size)
        if b" 200 " not in sock.makefile("rb").readline():
            raise RuntimeError("PUT failed")


def engine_run(path: Path, work: Path) -> tuple[float, float, dict]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "IPTO_LOG_LEVEL": "warning"}
    server = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(work)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        for _ in range(300):
            try:
                api(base, "GET", "/v1/health")
                break
            except OSError:
                time.sleep(0.1)
        token = api(base, "POST", "/v1/auth/signup", {"email": "i@bench.io", "password": "bench password"})["token"]
        ds = api(base, "POST", "/v1/datasets", {"name": "bench", "schema": SCHEMA}, token)["dataset_id"]
        target = api(base, "GET", f"/v1/datasets/{ds}/upload-url/bench.jsonl", token=token)
        start = time.perf_counter()
        put_file(target["upload_url"], path)
        while (imp := api(base, "GET", f"/v1/imports/{target['import_id']}", token=token))["status"] not in (
                "complete", "partial", "failed", "pending_schema"):
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        rss = peak_rss_mib(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    total = imp["accepted_count"] + imp["rejected_count"]
    return total / elapsed, rss, {k: imp[k] for k in ("status", "accepted_count", "rejected_count")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "imports.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ipto-bench-imports-"))
    path = work / "records.jsonl"
    print(f"generating {args.mib} MiB of JSONL ...", flush=True)
    records = generate(path, args.mib)
    base_rates, rates, rss = [], [], []
    for run in range(args.runs):
        base_rates.append(parse_only(path))
        rate, peak, outcome = engine_run(path, work / f"data{run}")
        rates.append(rate)
        rss.append(peak)
        print(f"run {run + 1}: parse-only {base_rates[-1]:,.0f} rec/s, engine {rate:,.0f} rec/s, peak RSS {peak:.0f} MiB, {outcome}", flush=True)
    subprocess.run(["rm", "-rf", str(work)], check=False)
    b, e = statistics.median(base_rates), statistics.median(rates)
    print()
    print(f"{'measure':<56} {'median':>12} {'min-max':>23} {'ratio':>6}")
    print(f"{'baseline: orjson.loads per line, 1 process (rec/s)':<56} {b:>12,.0f} {min(base_rates):>11,.0f}-{max(base_rates):<11,.0f} {1.0:>6.2f}")
    print(f"{'engine: PUT + validate + commit, ' + str(records) + ' records (rec/s)':<56} {e:>12,.0f} "
          f"{min(rates):>11,.0f}-{max(rates):<11,.0f} {e / b:>6.2f}")
    print(f"{'server peak RSS (MiB)':<56} {statistics.median(rss):>12.0f}   (target <= 150)")
    print(f"ratio {e / b:.2f} (target >= 0.25)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"records": records, "parse_only_rec_s": base_rates, "engine_rec_s": rates,
                                     "ratio": e / b, "server_peak_rss_mib": rss}, indent=2))


if __name__ == "__main__":
    main()
