"""``kill -9`` of the engine while small uploads are in flight, then a restart.

Eight clients upload small files into one dataset as fast as they can; the engine (one
process, or the primary of two) is killed with SIGKILL mid-stream, its workers dying with
it. After a restart every upload whose confirm was answered is there, uploaded, with the
SHA-256 it was confirmed with, and the dataset's counters agree with its objects: nothing
acknowledged is lost and nothing is counted twice or half.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.conftest import as_env, backend_overrides
from tests.test_service import _free_port, _wait_healthy

SIZE = 3000


def _call(base: str, method: str, path: str, body=None, headers=None) -> dict:
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["data"]


@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_mid_upload_keeps_every_acknowledged_confirm(tmp_path, workers):
    env = {**os.environ, **as_env(backend_overrides()), "IPTO_LOG_LEVEL": "warning", "IPTO_HTTP_WORKERS": str(workers)}
    log = open(tmp_path / "engine.log", "ab")  # noqa: SIM115 - closed below

    def start() -> tuple[subprocess.Popen, str]:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir",
                                 str(tmp_path / "data")], stdout=subprocess.DEVNULL, stderr=log, env=env)
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, proc)
        return proc, base

    proc, base = start()
    acked: dict[str, str] = {}  # object id -> the SHA-256 its answered confirm carried
    stop = threading.Event()
    try:
        owner = {"Authorization": "Bearer " + _call(base, "POST", "/v1/auth/signup",
                                                    {"email": "k@example.com", "password": "long enough pw"})["token"]}
        ds = _call(base, "POST", "/v1/datasets", {"name": "k"}, owner)["dataset_id"]

        def client(c: int) -> None:
            i = 0
            while not stop.is_set():
                data = os.urandom(SIZE)
                i += 1
                try:
                    up = _call(base, "POST", f"/v1/datasets/{ds}/objects/upload", {
                        "filename": f"{c}-{i}.bin", "content_type": "application/pdf", "size_bytes": SIZE,
                        "checksum_sha256": hashlib.sha256(data).hexdigest()}, owner)
                    with urllib.request.urlopen(urllib.request.Request(up["upload_url"], data=data, method="PUT"), timeout=30):
                        pass
                    done = _call(base, "POST", f"/v1/objects/{up['object_id']}/confirm", {}, owner)
                except (OSError, http.client.HTTPException, ValueError):
                    return  # the engine is gone (mid-request or mid-answer)
                acked[done["object_id"]] = done["checksum_sha256"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client, c) for c in range(8)]
            deadline = time.monotonic() + 30
            while len(acked) < 30 and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            stop.set()
            for future in futures:
                future.result()
        assert len(acked) >= 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    proc, base = start()
    try:
        for object_id, sha in acked.items():
            obj = _call(base, "GET", f"/v1/objects/{object_id}", headers=owner)
            assert obj["status"] == "uploaded" and obj["checksum_sha256"] == sha, obj
        dataset = _call(base, "GET", f"/v1/datasets/{ds}", headers=owner)
        assert dataset["object_count"] >= len(acked)
        assert dataset["total_bytes"] == dataset["object_count"] * SIZE
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == 0
