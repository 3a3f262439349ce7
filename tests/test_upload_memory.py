"""Server memory stays flat while a body far larger than any buffer streams in.

The server runs as its own process (as in production) so its peak RSS (VmHWM) is its own.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import httpx

from tests.test_service import _free_port, _wait_healthy

MiB = 1024 * 1024
BODY_MIB = 512


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_single_put_of_512_mib_does_not_grow_server_memory(tmp_path):
    port = _free_port()
    env = {**os.environ, "IPTO_UPLOADS_MULTIPART_THRESHOLD_BYTES": str(1024 * MiB)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        with httpx.Client(base_url=url, timeout=120) as client:
            token = client.post("/v1/auth/signup", json={"email": "m@example.com", "password": "long enough pw"}).json()["data"]["token"]
            h = {"Authorization": f"Bearer {token}"}
            ds = client.post("/v1/datasets", headers=h, json={"name": "big"}).json()["data"]["dataset_id"]
            # warm up every code path once, then take the baseline
            small = b"w" * 1000
            up = client.post(f"/v1/datasets/{ds}/objects/upload", headers=h,
                             json={"filename": "w.txt", "content_type": "text/plain", "size_bytes": len(small)}).json()["data"]
            client.put(up["upload_url"], content=small)
            client.post(f"/v1/objects/{up['object_id']}/confirm", headers=h)
            before = _peak_rss_mib(proc.pid)

            block = os.urandom(MiB)
            digest = hashlib.sha256()
            for _ in range(BODY_MIB):
                digest.update(block)
            up = client.post(f"/v1/datasets/{ds}/objects/upload", headers=h, json={
                "filename": "big.txt", "content_type": "text/plain", "size_bytes": BODY_MIB * MiB,
                "checksum_sha256": digest.hexdigest()}).json()["data"]
            assert up["upload_strategy"] == "single_part"

            def body():
                for _ in range(BODY_MIB):
                    yield block

            r = client.put(up["upload_url"], content=body(), headers={"Content-Length": str(BODY_MIB * MiB)})
            assert r.status_code == 200, r.text
            r = client.post(f"/v1/objects/{up['object_id']}/confirm", headers=h)
            assert r.status_code == 200 and r.json()["data"]["checksum_sha256"] == digest.hexdigest()
            after = _peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    growth = after - before
    print(f"server peak RSS {before:.0f} MiB -> {after:.0f} MiB while receiving {BODY_MIB} MiB")
    assert growth < 48, f"server memory grew by {growth:.0f} MiB while receiving {BODY_MIB} MiB"
