"""``ipto serve`` as a user runs it: a real process, signals, exit codes, log lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = proc.stderr.read() if proc.stderr else "(stderr went to the test's log file)"
            raise AssertionError(f"server exited early with {proc.returncode}: {said}")
        try:
            with urllib.request.urlopen(f"{url}/v1/health", timeout=1) as r:
                return json.load(r)
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def _serve(tmp_path, *extra, env=None):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )
    return proc, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_and_stops_cleanly_on_signal(tmp_path, signum):
    proc, url = _serve(tmp_path)
    try:
        body = _wait_healthy(url, proc)
        assert body["data"]["status"] == "ok"
    finally:
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events.index("shutdown_requested") < events.index("http_drained") < events.index("service_stopped")
    access = [line for line in lines if line["event"] == "request"]
    assert access and access[0]["path"] == "/v1/health" and access[0]["request_id"].startswith("req_")
    assert (tmp_path / "data" / "engine.db").exists()
    assert oct((tmp_path / "data" / "server.key").stat().st_mode & 0o777) == "0o600"


def test_bad_config_value_stops_startup_with_one_line(tmp_path):
    proc, _ = _serve(tmp_path, env={"IPTO_HTTP_PORT": "x", "IPTO_REVIEW_WINDOW_SECONDS": "soon"})
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert stderr.strip().count("\n") == 0
    assert "review.window_seconds" in stderr


def test_second_process_on_same_data_dir_is_refused(tmp_path):
    first, url = _serve(tmp_path)
    try:
        _wait_healthy(url, first)
        second, _ = _serve(tmp_path)
        _, stderr = second.communicate(timeout=30)
        assert second.returncode == 2
        assert "another ipto process" in stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
