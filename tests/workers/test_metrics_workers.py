"""``ipto serve --workers 2``: ``GET /metrics`` reports the whole engine, whichever process
answers the scrape (prometheus-client's multiprocess mode, files under ``<data dir>/metrics``).

Each request opens its own connection, so the kernel hands it to either process; the
requests go 16 at a time (one at a time, the idle process that last accepted tends to win
every connection). The test sends requests until both processes have served some (each process's own file says
how many it counted), then scrapes, again until both processes have answered a scrape:
every scrape must count every request, the sum of both processes' counts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import as_env, backend_overrides
from tests.test_service import _free_port, _wait_healthy

HEALTH = (("method", "GET"), ("route", "/v1/health"), ("status", "200"))
SCRAPES = (("method", "GET"), ("route", "/metrics"), ("status", "200"))
MAX_REQUESTS = 4000
BURST = 16


def _counts(text: str) -> dict[tuple[tuple[str, str], ...], float]:
    """``ipto_http_requests_total`` by sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ipto_http_requests_total"
    }


def _per_process(metrics_dir: Path, pid: int, scratch: Path) -> dict[tuple[tuple[str, str], ...], float]:
    """What one process counted: its own file, collected alone."""
    alone = scratch / str(pid)
    alone.mkdir(exist_ok=True)
    shutil.copy(metrics_dir / f"counter_{pid}.db", alone / f"counter_{pid}.db")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "ipto_http_requests_total"
    }


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        return r.read().decode()


def test_metrics_count_the_requests_of_both_workers_whichever_answers(tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    env = {**os.environ, **as_env(backend_overrides()), "IPTO_LOG_LEVEL": "warning", "IPTO_METRICS_ENABLED": "true"}
    log = open(tmp_path / "engine.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(data), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    pool = ThreadPoolExecutor(BURST)
    try:
        _wait_healthy(base, proc)
        children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        # the HTTP workers (the delivery process, also a child, serves no HTTP)
        pids = [proc.pid, *(c for c in children if b"engine.worker" in Path(f"/proc/{c}/cmdline").read_bytes())]
        assert len(pids) == 2
        metrics_dir = data / "metrics"
        deadline = time.monotonic() + 60
        while not all((metrics_dir / f"counter_{pid}.db").exists() for pid in pids):  # the worker may still be starting
            assert time.monotonic() < deadline, sorted(p.name for p in metrics_dir.iterdir())
            time.sleep(0.1)
        before = _counts(_get(f"{base}/metrics")).get(HEALTH, 0.0)
        own_before = {pid: _per_process(metrics_dir, pid, tmp_path).get(HEALTH, 0.0) for pid in pids}
        sent = 0
        while sent < MAX_REQUESTS:
            list(pool.map(_get, [f"{base}/v1/health"] * BURST))
            sent += BURST
            if all(_per_process(metrics_dir, pid, tmp_path).get(HEALTH, 0) > own_before[pid] for pid in pids):
                break
        own = {pid: _per_process(metrics_dir, pid, tmp_path) for pid in pids}
        assert all(own[pid].get(HEALTH, 0) > own_before[pid] for pid in pids), f"one process served every request: {own}"
        scrapes = 0
        while scrapes < MAX_REQUESTS:
            for text in pool.map(_get, [f"{base}/metrics"] * BURST):
                counted = _counts(text)
                assert counted[HEALTH] - before == sent, (counted[HEALTH], before, sent)  # the whole engine, every time
            scrapes += BURST
            if scrapes >= 2 and all(_per_process(metrics_dir, pid, tmp_path).get(SCRAPES, 0) > 0 for pid in pids):
                break
        answered = {pid: _per_process(metrics_dir, pid, tmp_path).get(SCRAPES, 0) for pid in pids}
        assert all(n > 0 for n in answered.values()), f"one process answered every scrape: {answered}"
        assert sum(own[pid][HEALTH] for pid in pids) == before + sent  # the scrapes' figure is the sum of both
        text = _get(f"{base}/metrics")
        leases = [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == "ipto_leases_held"]
        assert {s.labels["pid"] for s in leases} == {str(p) for p in pids}  # per process, as the issue asks
    finally:
        pool.shutdown()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert proc.returncode == 0, (tmp_path / "engine.log").read_text()[-4000:]
