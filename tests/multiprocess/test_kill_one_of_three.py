"""Three engine processes on one PostgreSQL and one S3 bucket; one is killed with SIGKILL.

Uploads, approvals and record imports for several datasets are spread over all three
processes (any process accepts any request), one process is killed mid-run, and the work
goes on through the other two. Afterwards: every confirmed object is there exactly once
and active, every job is terminal, every accepted record is there exactly once, and each
dataset's imports ran in the order their files arrived.

Collected only in the PostgreSQL + S3 pass (``IPTO_TEST_BACKEND=postgres-s3``, see
tests/conftest.py): it needs both servers, which that pass starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import as_env, backend_overrides
from tests.test_service import _free_port, _wait_healthy

DATASETS = 3
OBJECTS_PER_DATASET = 3
IMPORTS_PER_DATASET = 3
RECORDS_PER_IMPORT = 20_000
SCHEMA = {"type": "object", "required": ["n", "name"], "properties": {"n": {"type": "integer"}, "name": {"type": "string"}}}


class Engine:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / f"{data_dir.name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--port", str(self.port), "--data-dir", str(data_dir)],
            stdout=subprocess.DEVNULL, stderr=self.log, env=env,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self.log.close()


def _call(base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["data"]


def _put(url: str, data: bytes) -> None:
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="PUT"), timeout=60) as r:
        assert r.status == 200


def _records(dataset: int, imp: int) -> bytes:
    lines = []
    for i in range(RECORDS_PER_IMPORT):
        n = (dataset * IMPORTS_PER_DATASET + imp) * RECORDS_PER_IMPORT + i
        lines.append(json.dumps({"n": n, "name": "x" * 40}) if i % 100 else json.dumps({"n": "not a number"}))
    return ("\n".join(lines) + "\n").encode()


def _doc(i: int) -> bytes:
    return (f"Document {i}: the harvest of orchard {i} was counted twice.\n\n" * 30).encode()


def _all(base: str, path: str, key: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every item of a paginated list (``data[key]``), following the cursors."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
        page = _call(base, "GET", path + query, headers=headers)
        items.extend(page[key])
        if not page["has_more"]:
            return items
        cursor = page["next_cursor"]


def test_three_processes_survive_one_killed_mid_run(tmp_path: Path) -> None:
    shared = {
        **backend_overrides(),
        "admin.bootstrap_email": "root@example.com", "admin.bootstrap_password": "admin password",
        "actors.lease_ttl_seconds": 6, "actors.scan_seconds": 1, "pipeline.workers": 1,
    }
    env = {**os.environ, **as_env(shared)}
    engines = [Engine(tmp_path / f"p{i}", env) for i in range(3)]
    try:
        for e in engines:
            _wait_healthy(e.url, e.proc, timeout=60)
        bases = [e.url for e in engines]
        owner = {"Authorization": "Bearer " + _call(bases[0], "POST", "/v1/auth/signup",
                                                    {"email": "p@example.com", "password": "long enough pw"})["token"]}
        admin = {"Authorization": "Bearer " + _call(bases[1], "POST", "/v1/auth/login",
                                                    {"email": "root@example.com", "password": "admin password"})["token"]}
        datasets = [_call(bases[i % 3], "POST", "/v1/datasets", {"name": f"d{i}", "schema": SCHEMA}, owner)["dataset_id"]
                    for i in range(DATASETS)]

        confirmed: dict[str, list[str]] = {ds: [] for ds in datasets}
        jobs: list[str] = []
        imports: dict[str, list[str]] = {ds: [] for ds in datasets}
        step = 0
        killed = False

        def live() -> list[str]:
            return [e.url for e in engines if e.proc.poll() is None]

        def base() -> str:
            nonlocal step
            step += 1
            alive = live()
            return alive[step % len(alive)]

        for round_ in range(max(OBJECTS_PER_DATASET, IMPORTS_PER_DATASET)):
            for d, ds in enumerate(datasets):
                if round_ < IMPORTS_PER_DATASET:
                    url = _call(base(), "GET", f"/v1/datasets/{ds}/upload-url/r{round_}.jsonl", headers=owner)
                    _put(url["upload_url"], _records(d, round_))
                    imports[ds].append(url["import_id"])
                    # The next file of this dataset must arrive after this one (arrival order).
                    deadline = time.monotonic() + 30
                    while _call(base(), "GET", f"/v1/imports/{url['import_id']}", headers=owner)["status"] == "uninitialised":
                        assert time.monotonic() < deadline, "the import's arrival was never noticed"
                        time.sleep(0.1)
                if round_ < OBJECTS_PER_DATASET:
                    data = _doc(d * 10 + round_)
                    up = _call(base(), "POST", f"/v1/datasets/{ds}/objects/upload",
                               {"filename": "d.txt", "content_type": "text/plain", "size_bytes": len(data)}, owner)
                    _put(up["upload_url"], data)
                    _call(base(), "POST", f"/v1/objects/{up['object_id']}/confirm", {}, owner)
                    confirmed[ds].append(up["object_id"])
                    jobs.append(_call(base(), "POST", f"/v1/admin/staged-objects/{up['object_id']}/approve", {}, admin)["job_id"])
            if round_ == 1 and not killed:
                engines[2].proc.send_signal(signal.SIGKILL)  # mid-run: imports and pipelines under way
                engines[2].proc.wait(timeout=30)
                killed = True
        assert killed

        # Everything reaches a terminal state through the two survivors.
        deadline = time.monotonic() + 240
        while True:
            statuses = [_call(base(), "GET", f"/v1/imports/{i}", headers=owner)["status"] for ids in imports.values() for i in ids]
            job_states = [_call(base(), "GET", f"/v1/jobs/{j}", headers=owner)["status"] for j in jobs]
            if all(s in ("complete", "partial", "failed") for s in statuses) and all(s in ("succeeded", "failed") for s in job_states):
                break
            assert time.monotonic() < deadline, (statuses, job_states)
            time.sleep(0.5)
        assert job_states == ["succeeded"] * len(jobs)
        assert statuses == ["partial"] * len(statuses)  # 1 % of every file is invalid

        for ds in datasets:
            objects = _all(base(), f"/v1/datasets/{ds}/objects", "objects", owner)
            ids = [o["object_id"] for o in objects]
            assert sorted(ids) == sorted(confirmed[ds]) and len(set(ids)) == len(ids)
            assert all(o["status"] == "active" for o in objects), objects

            imps = [_call(base(), "GET", f"/v1/imports/{i}", headers=owner) for i in imports[ds]]
            expected_per_import = RECORDS_PER_IMPORT - RECORDS_PER_IMPORT // 100
            assert [i["accepted_count"] for i in imps] == [expected_per_import] * IMPORTS_PER_DATASET
            # One at a time, in arrival order: each started after the previous finished.
            for earlier, later in zip(imps, imps[1:], strict=False):
                assert earlier["finished_at"] <= later["started_at"], (earlier, later)

            points = _all(base(), f"/v1/datasets/{ds}/datapoints", "datapoints", owner)
            numbers = [p["data"]["n"] for p in points]
            assert len(numbers) == len(set(numbers)) == expected_per_import * IMPORTS_PER_DATASET
            assert numbers == sorted(numbers)  # import order, and file order within an import
            dataset = _call(base(), "GET", f"/v1/datasets/{ds}", headers=owner)
            assert dataset["total_datapoint_count"] == len(numbers)
            assert dataset["active_object_count"] == OBJECTS_PER_DATASET
    finally:
        for e in engines:
            e.stop()
