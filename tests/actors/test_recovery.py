"""Recovery: a service stopped mid-pipeline, or killed with SIGKILL, finishes every job once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import httpx
import pytest
import trio

from engine.config import load_config
from engine.service import run_service
from tests.conftest import as_env, backend_overrides, make_config
from tests.rawdb import query
from tests.test_service import _free_port, _wait_healthy

ADMIN = {"admin.bootstrap_email": "root@example.com", "admin.bootstrap_password": "admin password"}


def _doc(i: int) -> bytes:
    return (f"Report {i}. The quarterly revenue of unit {i} grew steadily.\n\n" * 40).encode()


def _duplicates(cfg) -> list:
    return query(cfg, "SELECT object_id, chunk_no, count(*) FROM search_chunks GROUP BY 1, 2 HAVING count(*) > 1")


async def _provider_and_admin(client):
    token = (await client.post("/v1/auth/signup", json={"email": "p@example.com", "password": "long enough pw"})).json()["data"]["token"]
    owner = {"Authorization": f"Bearer {token}"}
    login = await client.post("/v1/auth/login", json={"email": "root@example.com", "password": "admin password"})
    admin = {"Authorization": f"Bearer {login.json()['data']['token']}"}
    ds = (await client.post("/v1/datasets", headers=owner, json={"name": "r"})).json()["data"]["dataset_id"]
    return owner, admin, ds


async def _upload_and_approve(client, owner, admin, ds, data):
    up = (await client.post(f"/v1/datasets/{ds}/objects/upload", headers=owner,
                            json={"filename": "r.txt", "content_type": "text/plain", "size_bytes": len(data)})).json()["data"]
    await client.put(up["upload_url"], content=data)
    await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=owner)
    job = (await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)).json()["data"]["job_id"]
    return up["object_id"], job


async def test_service_stopped_mid_pipeline_finishes_every_job_once_after_restart(tmp_path, monkeypatch):
    import engine.pipeline.stages as stages

    cfg = make_config(tmp_path / "data", **ADMIN, **{"pipeline.workers": 1})
    real_extract = stages.extract

    def slow_extract(*args, **kwargs):
        time.sleep(0.3)
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(stages, "extract", slow_extract)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_service, cfg)
        async with httpx.AsyncClient(base_url=handle.url) as client:
            owner, admin, ds = await _provider_and_admin(client)
            made = [await _upload_and_approve(client, owner, admin, ds, _doc(i)) for i in range(5)]
            while True:  # stop once the first object is active and the rest are not
                statuses = [(await client.get(f"/v1/objects/{oid}", headers=owner)).json()["data"]["status"] for oid, _ in made]
                if "active" in statuses:
                    break
                await trio.sleep(0.05)
        assert statuses.count("active") < 5
        handle.stop()
    monkeypatch.setattr(stages, "extract", real_extract)

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_service, cfg)
        await handle.services.pipeline.wait_idle()
        async with httpx.AsyncClient(base_url=handle.url) as client:
            for oid, job_id in made:
                obj = (await client.get(f"/v1/objects/{oid}", headers=owner)).json()["data"]
                job = (await client.get(f"/v1/jobs/{job_id}", headers=owner)).json()["data"]
                assert obj["status"] == "active" and job["status"] == "succeeded", (obj, job)
            data = (await client.get(f"/v1/datasets/{ds}", headers=owner)).json()["data"]
            assert data["active_object_count"] == 5
        handle.stop()
    assert _duplicates(cfg) == []


def _api(base, method, path, body=None, headers=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["data"]


def _put(url, data):
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="PUT"), timeout=30) as r:
        assert r.status == 200


@pytest.mark.parametrize(("kill_after", "workers"), [(0.0, 1), (0.4, 1), (0.4, 2)])
def test_kill_9_then_restart_finishes_pipelines_and_expires_overdue_reviews(tmp_path, kill_after, workers):
    """With ``workers`` 2 the primary is killed; its worker dies with it (PR_SET_PDEATHSIG)."""
    data_dir = tmp_path / "data"
    backend = backend_overrides()
    env = {**os.environ, **as_env(backend), "IPTO_ADMIN_BOOTSTRAP_EMAIL": "root@example.com",
           "IPTO_ADMIN_BOOTSTRAP_PASSWORD": "admin password", "IPTO_REVIEW_WINDOW_SECONDS": "4", "IPTO_PIPELINE_WORKERS": "1",
           "IPTO_HTTP_WORKERS": str(workers)}

    log = open(tmp_path / "engine.log", "ab")  # a file, not a pipe nobody reads: a full pipe blocks the server  # noqa: SIM115

    def start():
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                                stdout=subprocess.DEVNULL, stderr=log, env=env)
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, proc)
        return proc, base

    proc, base = start()
    try:
        owner = {"Authorization": "Bearer " + _api(base, "POST", "/v1/auth/signup", {"email": "k@example.com", "password": "long enough pw"})["token"]}
        admin = {"Authorization": "Bearer " + _api(base, "POST", "/v1/auth/login", {"email": "root@example.com", "password": "admin password"})["token"]}
        ds = _api(base, "POST", "/v1/datasets", {"name": "k"}, owner)["dataset_id"]
        approved, staged = [], []
        for i in range(7):
            data = _doc(i)
            up = _api(base, "POST", f"/v1/datasets/{ds}/objects/upload", {"filename": "k.txt", "content_type": "text/plain", "size_bytes": len(data)}, owner)
            _put(up["upload_url"], data)
            _api(base, "POST", f"/v1/objects/{up['object_id']}/confirm", {}, owner)
            if i < 5:
                job = _api(base, "POST", f"/v1/admin/staged-objects/{up['object_id']}/approve", {}, admin)["job_id"]
                approved.append((up["object_id"], job))
            else:
                staged.append(up["object_id"])
        time.sleep(kill_after)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(4.5)  # the staged objects' review window passes while the engine is down

    proc, base = start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            objs = [_api(base, "GET", f"/v1/objects/{oid}", headers=owner) for oid, _ in approved]
            if all(o["status"] == "active" for o in objs):
                break
            time.sleep(0.2)
        assert [o["status"] for o in objs] == ["active"] * 5
        for _, job_id in approved:
            assert _api(base, "GET", f"/v1/jobs/{job_id}", headers=owner)["status"] == "succeeded"
        for oid in staged:
            while time.monotonic() < deadline and _api(base, "GET", f"/v1/objects/{oid}", headers=owner)["review_state"] == "staged":
                time.sleep(0.1)
            assert _api(base, "GET", f"/v1/objects/{oid}", headers=owner)["review_state"] == "expired"
        dataset = _api(base, "GET", f"/v1/datasets/{ds}", headers=owner)
        assert dataset["active_object_count"] == 5 and dataset["object_count"] == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert _duplicates(load_config(env={}, overrides={"data_dir": data_dir, **backend})) == []
