"""``ipto serve --workers 2``: two processes behind one socket, one actor per dataset.

Each request opens its own connection, so the kernel hands requests to either process;
an upload is often initiated through one and confirmed through the other. The dataset's
counters must come out exact (every change applied once, by one actor), refused uploads
must stay refused, and SIGTERM must stop both processes cleanly.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from tests import rawdb
from tests.conftest import NETWORK_STORE, as_env, backend_overrides
from tests.test_service import _free_port, _wait_healthy

UPLOADS = 40


def _call(base: str, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _children(pid: int) -> list[int]:
    """The HTTP workers among ``pid``'s children (not the delivery process)."""
    found = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in found if b"engine.worker" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_two_workers_share_uploads_of_one_dataset_and_stop_together(tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    overrides = backend_overrides()
    env = {**os.environ, **as_env(overrides), "IPTO_LOG_LEVEL": "warning"}
    log = open(tmp_path / "engine.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        _wait_healthy(base, proc)
        workers = _children(proc.pid)
        assert len(workers) == 1
        status, body = _call(base, "POST", "/v1/auth/signup", {"email": "w@example.com", "password": "long enough pw"})
        owner = {"Authorization": f"Bearer {body['data']['token']}"}
        ds = _call(base, "POST", "/v1/datasets", {"name": "w"}, owner)[1]["data"]["dataset_id"]

        def upload(i: int) -> int:
            data = f"invoice {i}\n".encode() * (50 + i)
            declared = hashlib.sha256(data if i % 10 else b"something else").hexdigest()  # every tenth lies
            status, up = _call(base, "POST", f"/v1/datasets/{ds}/objects/upload", {
                "filename": f"{i}.txt", "content_type": "text/plain", "size_bytes": len(data), "checksum_sha256": declared}, owner)
            assert status == 201, up
            up = up["data"]
            try:
                with urllib.request.urlopen(urllib.request.Request(up["upload_url"], data=data, method="PUT"), timeout=30) as r:
                    assert r.status == 200
            except urllib.error.HTTPError as exc:
                assert i % 10 == 0 and exc.code == 400  # S3 checks the declared SHA-256 itself
            status, done = _call(base, "POST", f"/v1/objects/{up['object_id']}/confirm", {}, owner)
            if i % 10 == 0:
                assert status == 422 and done["error"]["code"] in ("checksum_mismatch", "size_mismatch"), done
                assert done["error"]["details"]
            else:
                assert status == 200 and done["data"]["status"] == "uploaded", done
            return len(data)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            sizes = list(pool.map(upload, range(UPLOADS)))
        dataset = _call(base, "GET", f"/v1/datasets/{ds}", headers=owner)[1]["data"]
        accepted = [size for i, size in enumerate(sizes) if i % 10]
        assert dataset["object_count"] == len(accepted)
        assert dataset["total_bytes"] == sum(accepted)
        status, missing = _call(base, "POST", "/v1/objects/obj_missing/confirm", {}, owner)
        assert status == 404 and missing["error"]["code"] == "not_found"
        if NETWORK_STORE:
            # On PostgreSQL too the worker forwards its actor messages: only the primary ever
            # held the dataset (leased to one process at a time, it used to change hands).
            holders = rawdb.query(SimpleNamespace(store_url=overrides["store.url"]),
                                  "SELECT owner FROM leases WHERE name = ?", f"dataset:{ds}")
            assert [h[0].split(":")[1] for h in holders] == [str(proc.pid)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
