"""Settlement killed with SIGKILL (one engine process, either store): inside a release
transaction (nothing of it stays), and right after committing a release (it is not done
again); the restarted engine releases the rest, each statement exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import trio
import trio_asyncio

from engine.store import open_store
from tests.conftest import as_env, backend_overrides, make_config
from tests.http.money_helpers import charged_access
from tests.rawdb import query
from tests.test_service import _free_port, _wait_healthy


def test_kill_9_during_settlement_then_restart_releases_each_statement_once(tmp_path):
    backend = backend_overrides()
    cfg = make_config(tmp_path / "data", **backend)

    async def load() -> None:
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        async with trio_asyncio.open_loop(), open_store(cfg) as store:
            for p in range(4):
                for month in (1, 2):
                    await charged_access(store, "tnt_buyer", f"tnt_provider{p}", "dset_x", 1_000 + p, datetime(2026, month, 9, tzinfo=UTC))

    trio.run(load)
    env = {**os.environ, **as_env(backend)}
    log = open(tmp_path / "engine.log", "ab")  # noqa: SIM115 - a file, never a full pipe

    def start(**extra: str) -> tuple[subprocess.Popen, str]:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port), "--data-dir", str(cfg.data_dir)],
                                stdout=subprocess.DEVNULL, stderr=log, env={**env, **extra})
        return proc, f"http://127.0.0.1:{port}"

    released = "SELECT count(*) FROM payouts WHERE released_at IS NOT NULL"
    proc, _ = start(IPTO_FAILPOINTS="settlement.in_transaction")
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert query(cfg, released) == [(0,)] and query(cfg, "SELECT count(*) FROM payout_entries") == [(0,)]
    proc, _ = start(IPTO_FAILPOINTS="settlement.after_release")
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert query(cfg, released) == [(1,)]
    first = query(cfg, "SELECT id, released_at FROM payouts WHERE released_at IS NOT NULL")
    proc, base = start()
    try:
        _wait_healthy(base, proc, timeout=60)
        deadline = time.monotonic() + 60
        while query(cfg, released) != [(8,)]:
            assert time.monotonic() < deadline, query(cfg, released)
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    assert query(cfg, "SELECT id, released_at FROM payouts WHERE id = ?", first[0][0]) == first  # not released again
    assert query(cfg, "SELECT count(*), count(DISTINCT ledger_entry_id) FROM payout_entries") == [(16, 16)]
    assert query(cfg, "SELECT count(*) FROM ledger_entries e WHERE NOT EXISTS"
                      " (SELECT 1 FROM payout_entries x WHERE x.ledger_entry_id = e.id)") == [(0,)]
