"""Schemathesis drives every route of ``/v1/openapi.json`` against a live engine.

The engine runs as ``python -m engine serve`` (a child process, on the backends this pass
selects; the default pass is SQLite and local blobs) with a bootstrapped platform admin.
Requests carry an ``X-API-Key`` holding every scope (``admin:*`` included), so every
operation is reached past authentication; an API key rather than a session so that
fuzzing ``POST /v1/auth/logout`` cannot log the run itself out (logout refuses keys, and
the key wins over a bearer token). A well-formed ``Authorization`` header is sent too:
otherwise schemathesis fills the bearer scheme with an empty token, which the engine
rightly refuses (401) before looking at the key.

Schemathesis runs all its phases — examples, coverage (boundary values of every
constraint), fuzzing, and stateful sequences following the links it infers between
operations (create a dataset → read, update, delete it; create a key → revoke it) — with
a fixed seed and ``EXAMPLES`` cases per operation, and these checks:

* ``not_a_server_error`` — no 5xx, whatever the input;
* ``status_code_conformance`` — every status is one the document lists;
* ``content_type_conformance`` and ``response_schema_conformance`` — every answer matches
  the document;
* ``--request-timeout`` — a request unanswered for ``TIMEOUT`` seconds fails the run (a hang).

Budget: about a minute on a 2-core machine (76 operations), a few at most. Raise ``IPTO_FUZZ_EXAMPLES``
for a deeper run; ``IPTO_FUZZ_SEED`` picks another seed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engine.auth import ALL_SCOPES
from tests.conftest import as_env, backend_overrides

EXAMPLES = int(os.environ.get("IPTO_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("IPTO_FUZZ_SEED", "20261203"))
TIMEOUT = 15.0
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
ADMIN = ("fuzz-admin@example.com", "fuzzing admin password")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_engine(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ, **as_env(backend_overrides()),
        "IPTO_ADMIN_BOOTSTRAP_EMAIL": ADMIN[0], "IPTO_ADMIN_BOOTSTRAP_PASSWORD": ADMIN[1],
        "IPTO_LOG_LEVEL": "warning", "IPTO_LOG_FORMAT": "json",
    }
    log = open(tmp_path / "engine.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the engine did not start:\n" + (tmp_path / "engine.log").read_text()[-4000:])


def _credentials(base: str) -> tuple[str, str]:
    """``(API key, session token)`` of the platform admin, with a little data to find."""
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post("/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        assert r.status_code == 200, r.text
        headers = {"Authorization": f"Bearer {r.json()['data']['token']}"}
        r = client.post("/v1/api-keys", headers=headers, json={"name": "fuzz", "scopes": list(ALL_SCOPES)})
        assert r.status_code == 201, r.text
        key = r.json()["data"]["key"]
        # Something to find: a dataset with a staged object (reads and the review queue have data).
        ds = client.post("/v1/datasets", headers=headers, json={"name": "Fuzz target", "visibility": "listed"}).json()["data"]
        up = client.post(f"/v1/datasets/{ds['dataset_id']}/objects/upload", headers=headers,
                         json={"filename": "a.txt", "content_type": "text/plain", "size_bytes": 5}).json()["data"]
        assert client.put(up["upload_url"], content=b"hello").status_code == 200
        assert client.post(f"/v1/objects/{up['object_id']}/confirm", headers=headers, json={}).status_code == 200
        return str(key), str(headers["Authorization"].split()[1])


def test_schemathesis_finds_no_server_error_no_hang_and_no_answer_outside_the_document(tmp_path):
    proc, base = _start_engine(tmp_path)
    try:
        key, token = _credentials(base)
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/v1/openapi.json",
             "--header", f"X-API-Key: {key}", "--header", f"Authorization: Bearer {token}",
             "--checks", CHECKS, "--max-examples", str(EXAMPLES), "--seed", str(SEED),
             "--request-timeout", str(TIMEOUT), "--workers", "2", "--no-color", "--suppress-health-check", "all",
             "--report", "junit", "--report-dir", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
        )
        assert proc.poll() is None, "the engine died during the run"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20000:]
    assert "55/55" in output or "Selected:" in output, output[-4000:]
    engine_log = (tmp_path / "engine.log").read_text()
    assert "unhandled_error" not in engine_log, engine_log[-8000:]
