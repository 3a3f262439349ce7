"""The data dir is private (issue 17, point 5): directories 0700 and files 0600 from the
start (the engine's umask), and a data dir an older engine left readable by others is
tightened at start, with a log line saying so."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import trio
from structlog.testing import capture_logs

from engine.service import run_service
from tests.conftest import NETWORK_STORE, create_dataset, make_config, signup
from tests.http.uploads_helpers import upload


def _too_open(root: Path) -> list[str]:
    out = []
    for path in [root, *root.rglob("*")]:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            out.append(f"{path.relative_to(root.parent)} {stat.filemode(st.st_mode)}")
    return out


async def _use(handle) -> None:
    async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client:
        alice = await signup(client)
        ds = await create_dataset(client, alice.headers, name="Private")
        await upload(client, alice.headers, ds["dataset_id"], b"a private invoice\n" * 100)


async def test_everything_the_engine_writes_is_private_from_the_start(tmp_path):
    os.umask(0o022)  # what a shell usually gives
    data = tmp_path / "data"
    cfg = make_config(data)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_service, cfg)
        await _use(handle)
        written = [p.name for p in data.rglob("*") if p.is_file()]
        if not NETWORK_STORE:
            assert "engine.db" in written and "engine.db-wal" in written
        assert "server.key" in written
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert _too_open(data) == []
        handle.stop()


async def test_an_older_broader_data_dir_is_tightened_at_start_and_logged(tmp_path):
    data = tmp_path / "data"
    cfg = make_config(data)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_service, cfg)
        await _use(handle)
        handle.stop()
    # As an engine without the fix (umask 022) would have left it.
    for path in [data, *data.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert _too_open(data)
    os.umask(0o022)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(run_service, cfg)
            assert _too_open(data) == []
            await _use(handle)  # and what it writes next is private too
            assert _too_open(data) == []
            handle.stop()
    fixed = [e for e in logs if e["event"] == "data_dir_permissions_fixed"]
    assert len(fixed) == 1 and fixed[0]["entries"] >= 3 and fixed[0]["data_dir"] == str(data)
