"""A fuzzer against a live engine (issue 17): random methods, paths (every route of the app
and the blob routes, with real and made-up ids), headers, bodies, framings, chunkings and
early disconnects. Whatever it sends: no 5xx, every answer within 5 s (a hang bound, not
a performance figure), a connection left either reusable or closed, and afterwards the
engine's open descriptors back to their count and its RSS back near where it was.

The engine runs as its own process (``python -m engine serve``) so that its descriptors
and memory are its own. Hypothesis runs a fixed number of examples, derandomized, so the
run is the same every time and takes about a minute.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import types
from typing import Any
from urllib.parse import quote, urlsplit

import h11
import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.http.app import create_app
from tests.conftest import S3, backend_env, make_config
from tests.test_service import _free_port, _wait_healthy

HANG_SECONDS = 5.0
EXAMPLES = 500
JSON_LIMIT = 64 * 1024
RSS_SLACK_MIB = 48


def _routes() -> list[tuple[str, set[str]]]:
    """Every route of the Quart app: its path template and methods."""
    cfg = make_config(__import__("pathlib").Path("/nonexistent"))
    app = create_app(types.SimpleNamespace(cfg=cfg, metrics=None))  # type: ignore[arg-type]  # only the routing table is read
    return sorted({(rule.rule, frozenset(rule.methods or ())) for rule in app.url_map.iter_rules() if rule.endpoint != "static"})


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Engine:
    """The engine under test and the real things it holds (ids, URLs, credentials)."""

    def __init__(self, tmp_path: Any) -> None:
        cfg = make_config(tmp_path / "data")
        port = _free_port()
        env = {**backend_env(cfg), "IPTO_HTTP_MAX_JSON_BYTES": str(JSON_LIMIT), "IPTO_LOG_FORMAT": "json"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "engine.log", "w"), env=env,  # noqa: SIM115
        )
        self.log = tmp_path / "engine.log"
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        _wait_healthy(self.url, self.proc, timeout=60)
        with httpx.Client(base_url=self.url, timeout=30) as c:
            data = c.post("/v1/auth/signup", json={"email": "fuzz@example.com", "password": "a long passphrase"}).json()["data"]
            self.token = data["token"]
            h = {"Authorization": f"Bearer {self.token}"}
            self.key = c.post("/v1/api-keys", headers=h, json={"name": "k", "scopes": ["datasets:read", "keys:write"]}).json()["data"]
            ds = c.post("/v1/datasets", headers=h, json={"name": "Fuzzed", "visibility": "listed"}).json()["data"]
            self.dataset_id = ds["dataset_id"]
            body = b"an invoice to fuzz\n" * 10
            up = c.post(f"/v1/datasets/{self.dataset_id}/objects/upload", headers=h, json={
                "filename": "f.txt", "content_type": "text/plain", "size_bytes": len(body)}).json()["data"]
            assert c.put(up["upload_url"], content=body).status_code == 200
            assert c.post(f"/v1/objects/{up['object_id']}/confirm", headers=h).status_code == 200
            self.object_id = up["object_id"]
            self.upload_id = up["upload_id"]
            self.download_url = c.get(f"/v1/objects/{self.object_id}/download-url", headers=h).json()["data"]["download_url"]
            fresh = c.post(f"/v1/datasets/{self.dataset_id}/objects/upload", headers=h, json={
                "filename": "g.txt", "content_type": "text/plain", "size_bytes": 5000}).json()["data"]
            self.upload_url = fresh["upload_url"]
            imp = c.get(f"/v1/datasets/{self.dataset_id}/upload-url/people.jsonl", headers=h).json()["data"]
            self.import_url = imp["upload_url"]
            self.import_id = imp["import_id"]
        self.ids = {
            "dataset_id": self.dataset_id, "object_id": self.object_id, "upload_id": self.upload_id,
            "import_id": self.import_id, "key_id": self.key["api_key_id"],
        }

    def local_path(self, url: str) -> str:
        u = urlsplit(url)
        return u.path + ("?" + u.query if u.query else "")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log.read_text()


ROUTES = _routes()
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "G3T"]
_PLACEHOLDER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70).filter(lambda n: abs(n) < 2**63)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@st.composite
def requests(draw: st.DrawFn, engine: Engine) -> dict[str, Any]:
    kind = draw(st.sampled_from(["route", "route", "route", "blob", "random"]))
    if kind == "route":
        template, methods = draw(st.sampled_from(ROUTES))

        def fill(m: re.Match[str]) -> str:
            real = engine.ids.get(m.group(1)) or engine.ids.get("dataset_id")
            return draw(st.sampled_from([real, "x", quote(draw(st.text(max_size=20)), safe=""), "dset_" + "a" * 24]))

        path = _PLACEHOLDER.sub(fill, template)
        method = draw(st.sampled_from(sorted(methods) + METHODS))
    elif kind == "blob":
        url = draw(st.sampled_from([engine.download_url, engine.upload_url, engine.import_url]))
        path = engine.local_path(url)
        if draw(st.booleans()):
            path = draw(st.sampled_from([path.replace("signature=", "signature=0"), path.split("?")[0],
                                         "/blobs/objects/x", "/blobs/uploads/y?part=1", "/blobs/imports/z", "/blobs/"]))
        method = draw(st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]))
    else:
        path = "/" + quote(draw(st.text(max_size=30)), safe="/")
        method = draw(st.sampled_from(METHODS))
    if draw(st.booleans()) and "?" not in path:
        params = draw(st.dictionaries(st.sampled_from(["cursor", "limit", "status", "order", "q", "x"]), st.text(max_size=20), max_size=3))
        if params:
            path += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    auth = draw(st.sampled_from(["session", "key", "none", "garbage"]))
    headers: list[tuple[str, str]] = []
    if auth == "session":
        headers.append(("Authorization", f"Bearer {engine.token}"))
    elif auth == "key":
        headers.append(("X-API-Key", engine.key["key"]))
    elif auth == "garbage":
        headers.append(("Authorization", draw(st.sampled_from(["Bearer x", "Basic Zm9vOmJhcg==", "Bearer " + "a" * 500]))))
    if draw(st.booleans()):
        headers.append(("Content-Type", draw(st.sampled_from(["application/json", "text/plain", "application/x-ndjson",
                                                              "multipart/form-data; boundary=x", "application/json; charset=latin-1"]))))
    if draw(st.booleans()):
        headers.append(("Idempotency-Key", draw(st.text(alphabet="abcdef0123456789-", min_size=1, max_size=40))))
    if draw(st.integers(0, 9)) == 0:
        headers.append(("Expect", "100-continue"))
    shape = draw(st.sampled_from(["none", "json", "json", "bytes", "big", "deep"]))
    if shape == "none":
        body = b""
    elif shape == "json":
        body = orjson.dumps(draw(json_values))
    elif shape == "bytes":
        body = draw(st.binary(max_size=2048))
    elif shape == "big":
        body = b'{"name": "' + b"x" * draw(st.sampled_from([JSON_LIMIT, 3 * JSON_LIMIT, 2 * 1024 * 1024])) + b'"}'
    else:
        depth = draw(st.integers(10, 3000))
        body = b"[" * depth + b"]" * depth
    framing = draw(st.sampled_from(["length", "length", "chunked"])) if body or draw(st.booleans()) else "none"
    return {
        "method": method, "path": path, "headers": headers, "body": body, "framing": framing,
        "pieces": draw(st.integers(1, 6)),
        "disconnect": draw(st.sampled_from([None, None, None, "headers", "body"])),
        "follow": draw(st.booleans()),
    }


def _encode(req: dict[str, Any], host: str) -> tuple[bytes, bytes]:
    """The request head and its framed body."""
    headers = [("Host", host), *req["headers"]]
    body = req["body"]
    if req["framing"] == "length":
        headers.append(("Content-Length", str(len(body))))
        framed = body
    elif req["framing"] == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        step = max(1, len(body) // 3 or 1)
        framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step]) for i in range(0, len(body), step)) + b"0\r\n\r\n"
    else:
        framed = b""
    head = f"{req['method']} {req['path']} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("utf-8", "surrogateescape"), framed


def _read_response(sock: socket.socket, method: str, pending: bytes = b"") -> tuple[int, bool, bytes] | None:
    """(status, server will close, leftover bytes), or None if the server closed first."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method if re.fullmatch(r"[A-Z0-9]+", method) else "GET", target="/",
                          headers=[("host", "x"), ("content-length", "0")]))
    conn.send(h11.EndOfMessage())
    if pending:
        conn.receive_data(pending)
    status, closes = 0, False
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data and status == 0:
                return None
            conn.receive_data(data)
        elif isinstance(event, h11.InformationalResponse):
            continue
        elif isinstance(event, h11.Response):
            status = event.status_code
            closes = any(k.lower() == b"connection" and b"close" in v.lower() for k, v in event.headers)
        elif isinstance(event, h11.EndOfMessage):
            return status, closes, conn.trailing_data[0]
        elif isinstance(event, h11.ConnectionClosed):
            return None


def _send_all(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def _exchange(engine: Engine, req: dict[str, Any]) -> None:
    head, framed = _encode(req, f"127.0.0.1:{engine.port}")
    sock = socket.create_connection(("127.0.0.1", engine.port), timeout=HANG_SECONDS)
    try:
        if req["disconnect"] == "headers":
            _send_all(sock, head[: max(1, len(head) // 2)])
            return
        pieces = req["pieces"]
        data = head + framed
        if req["disconnect"] == "body":
            data = data[: len(head) + len(framed) // 2]
        cut = sorted({len(data) * i // pieces for i in range(1, pieces)})
        start = 0
        for end in [*cut, len(data)]:
            if not _send_all(sock, data[start:end]):
                break
            start = end
        if req["disconnect"] == "body":
            return
        try:
            got = _read_response(sock, req["method"])
        except TimeoutError:
            raise AssertionError(f"no answer within {HANG_SECONDS} s to {req['method']} {req['path'][:80]}") from None
        if got is None:
            return  # the server closed the connection (allowed: a request it would not read)
        status, closes, pending = got
        assert status < 500, (status, req["method"], req["path"][:120], req["framing"], len(req["body"]))
        if closes:
            while True:  # Connection: close must mean closed
                try:
                    more = sock.recv(65536)
                except (ConnectionResetError, TimeoutError) as exc:
                    assert not isinstance(exc, TimeoutError), "Connection: close but the socket stayed open"
                    break
                if not more:
                    break
        elif req["follow"]:
            _send_all(sock, f"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:{engine.port}\r\n\r\n".encode())
            try:
                again = _read_response(sock, "GET", pending)
            except TimeoutError:
                raise AssertionError(f"the connection hangs after {req['method']} {req['path'][:80]}") from None
            # Garbage after a short Content-Length may have made the server end the connection.
            assert again is None or again[0] < 500
    finally:
        sock.close()


def test_fuzzing_every_route_finds_no_5xx_no_hang_and_no_leak(tmp_path):
    engine = Engine(tmp_path)
    log = ""
    try:
        # Warm up: every route once, so what the engine opens for good is open before the baseline.
        for template, _ in ROUTES:
            path = _PLACEHOLDER.sub(lambda m: engine.ids.get(m.group(1), "x"), template)
            _exchange(engine, {"method": "GET", "path": path, "headers": [("Authorization", f"Bearer {engine.token}")],
                               "body": b"", "framing": "none", "pieces": 1, "disconnect": None, "follow": False})
        time.sleep(1)
        fds_before, rss_before = _open_fds(engine.proc.pid), _rss_mib(engine.proc.pid)

        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def fuzz(data: st.DataObject) -> None:
            req = data.draw(requests(engine))
            _exchange(engine, req)
            assert engine.proc.poll() is None, "the engine died"

        fuzz()
        with httpx.Client(base_url=engine.url, timeout=HANG_SECONDS) as c:
            assert c.get("/v1/health").status_code == 200
        deadline = time.monotonic() + 10
        while _open_fds(engine.proc.pid) > fds_before and time.monotonic() < deadline:
            time.sleep(0.1)
        fds_after, rss_after = _open_fds(engine.proc.pid), _rss_mib(engine.proc.pid)
        print(f"engine fds {fds_before} -> {fds_after}, RSS {rss_before:.0f} -> {rss_after:.0f} MiB after {EXAMPLES} examples")
        assert fds_after <= fds_before
        assert rss_after <= rss_before + RSS_SLACK_MIB
    finally:
        log = engine.stop()
    assert "Traceback" not in log and '"unhandled_error"' not in log, log[-3000:]
    if not S3:
        assert "blob_route_failed" not in log
