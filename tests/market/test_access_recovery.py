"""An access killed (SIGKILL) between its commit and its answer is, on retry with the same
Idempotency-Key, the same access with one charge: the access row carries the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.conftest import as_env, backend_overrides, make_config
from tests.rawdb import query
from tests.test_service import _free_port, _wait_healthy

TEXT = b"Okapi census of the Ituri forest: 412 okapis counted.\n"


def _call(base, method, path, body=None, headers=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


STALE = 15  # seconds before a dead claim may be taken over: longer than a restart on a loaded machine


def test_kill_9_between_the_access_commit_and_its_answer(tmp_path):
    backend = backend_overrides()
    cfg = make_config(tmp_path / "data", **backend)
    env = {**os.environ, **as_env(backend), "IPTO_ADMIN_BOOTSTRAP_EMAIL": "root@example.com",
           "IPTO_ADMIN_BOOTSTRAP_PASSWORD": "admin password", "IPTO_IDEMPOTENCY_IN_PROGRESS_TIMEOUT_SECONDS": str(STALE)}
    log = open(tmp_path / "engine.log", "ab")  # noqa: SIM115 - a file, never a full pipe

    def start(**extra):
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
                                stdout=subprocess.DEVNULL, stderr=log, env={**env, **extra})
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, proc, timeout=60)
        return proc, base

    proc, base = start(IPTO_FAILPOINTS="access.after_commit")
    try:
        bob = _call(base, "POST", "/v1/auth/signup", {"email": "bob@example.com", "password": "long enough pw"})[1]["data"]
        alice = _call(base, "POST", "/v1/auth/signup", {"email": "alice@example.com", "password": "long enough pw"})[1]["data"]
        admin = _call(base, "POST", "/v1/auth/login", {"email": "root@example.com", "password": "admin password"})[1]["data"]
        owner, buyer = {"Authorization": f"Bearer {bob['token']}"}, {"Authorization": f"Bearer {alice['token']}"}
        ds = _call(base, "POST", "/v1/datasets", {"name": "census", "visibility": "listed", "monetization_mode": "premium",
                                                  "pricing_model": "per_retrieval", "price_micros": 700_000}, owner)[1]["data"]
        up = _call(base, "POST", f"/v1/datasets/{ds['dataset_id']}/objects/upload",
                   {"filename": "census.txt", "content_type": "text/plain", "size_bytes": len(TEXT)}, owner)[1]["data"]
        with urllib.request.urlopen(urllib.request.Request(up["upload_url"], data=TEXT, method="PUT"), timeout=30):
            pass
        _call(base, "POST", f"/v1/objects/{up['object_id']}/confirm", None, owner)
        _call(base, "POST", f"/v1/admin/staged-objects/{up['object_id']}/approve", None, {"Authorization": f"Bearer {admin['token']}"})
        deadline = time.monotonic() + 120
        while _call(base, "GET", f"/v1/objects/{up['object_id']}", None, owner)[1]["data"]["status"] != "active":
            assert time.monotonic() < deadline, "the object never became active"
            time.sleep(0.2)
        key = {"Idempotency-Key": "access-once"}
        try:
            _call(base, "POST", f"/v1/objects/{up['object_id']}/access", None, {**buyer, **key})
            raise AssertionError("the failpoint should have killed the server before it answered")
        except (urllib.error.URLError, ConnectionError):
            pass
        assert proc.wait(timeout=30) == -9
        stale_at = time.monotonic() + STALE
    finally:
        if proc.poll() is None:
            proc.kill()
    written = query(cfg, "SELECT id, amount_micros FROM accesses WHERE buyer_tenant_id = ?", alice["tenant"]["tenant_id"])
    assert len(written) == 1 and written[0][1] == 700_000  # committed, never answered

    proc, base = start()
    try:
        status, body = _call(base, "POST", f"/v1/objects/{up['object_id']}/access", None, {**buyer, **key})
        assert status == 409 and body["error"]["code"] == "idempotency_in_progress"  # the dead claim is not yet stale
        time.sleep(max(0.0, stale_at - time.monotonic()) + 0.2)
        status, body = _call(base, "POST", f"/v1/objects/{up['object_id']}/access", None, {**buyer, **key})
        assert status == 201, body
        assert body["data"]["access_id"] == written[0][0] and body["data"]["charge"]["amount_micros"] == 700_000
        with urllib.request.urlopen(body["data"]["download_url"], timeout=30) as r:
            assert r.read() == TEXT
        status, again = _call(base, "POST", f"/v1/objects/{up['object_id']}/access", None, {**buyer, **key})
        assert status == 201 and again["data"]["access_id"] == written[0][0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert query(cfg, "SELECT count(*) FROM accesses") == [(1,)]
    assert query(cfg, "SELECT kind, amount_micros FROM ledger_entries ORDER BY seq") == [("charge", 700_000), ("fee", 140_000)]
