"""The upload peer: a stock tus server (``@tus/server`` + ``@tus/file-store``, pinned) under node.

The benchmark installs the packages itself with npm into ``bench/.peer/`` (git-ignored) the
first time, runs ``bench/tus_server.mjs`` from there on a free loopback port, and stops it
like every other server (:mod:`bench.harness`). Uploads use tus 1.0's creation extension
(``POST /files`` with ``Upload-Length``) and one ``PATCH`` carrying the whole body from
offset 0, sent by the same zero-copy sender as our presigned ``PUT``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bench import harness
from bench.client import Api, ApiError, send_file

PEER_DIR = harness.BENCH / ".peer"
PACKAGES = {"@tus/server": "2.4.5", "@tus/file-store": "2.1.1"}
TUS = {"Tus-Resumable": "1.0.0"}


def _installed() -> bool:
    for name, version in PACKAGES.items():
        manifest = PEER_DIR / "node_modules" / name / "package.json"
        if not manifest.is_file() or json.loads(manifest.read_text()).get("version") != version:
            return False
    return True


def install() -> str:
    """Install the pinned packages into bench/.peer (once); return node's version."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("node and npm are needed for the tus peer (node >= 20.19)")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if not _installed():
        PEER_DIR.mkdir(parents=True, exist_ok=True)
        (PEER_DIR / "package.json").write_text(json.dumps(
            {"name": "ipto-bench-peer", "private": True, "type": "module", "dependencies": PACKAGES}, indent=2))
        print(f"installing {', '.join(f'{k}@{v}' for k, v in PACKAGES.items())} into {PEER_DIR} ...", flush=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER_DIR, check=True)
    shutil.copyfile(harness.BENCH / "tus_server.mjs", PEER_DIR / "tus_server.mjs")
    return node


@contextlib.contextmanager
def tus_server(directory: Path, log: Path) -> Iterator[harness.Server]:
    port = harness.free_port()
    directory.mkdir(parents=True, exist_ok=True)
    argv = ["node", str(PEER_DIR / "tus_server.mjs"), "127.0.0.1", str(port), str(directory)]
    with harness.running("tus", argv, f"http://127.0.0.1:{port}", log, probe="/files", cwd=PEER_DIR) as server:
        yield server


async def tus_upload(api: Api, path: Path, offset: int, length: int) -> str:
    """Creation (``POST /files``) then one ``PATCH`` with the whole body; returns the upload URL."""
    reply = await api.http.post("/files", headers={**TUS, "Upload-Length": str(length)})
    if reply.status_code != 201:
        raise ApiError(reply.status_code, "tus_create", reply.text[:200])
    location = reply.headers["location"]
    if location.startswith("/"):
        location = api.base + location
    done = await send_file(location, path, offset, length, method="PATCH",
                           headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    if done.status != 204 or int(done.headers.get("upload-offset", -1)) != length:
        raise ApiError(done.status, "tus_patch", f"{done.headers} {done.body[:200]!r}")
    return location


def clear(directory: Path) -> None:
    """Drop the peer's finished uploads (between runs, outside the timing)."""
    for child in directory.iterdir():
        if child.is_file():
            child.unlink()
