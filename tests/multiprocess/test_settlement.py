"""Monthly settlement with several engine processes on one PostgreSQL, killed with SIGKILL
mid-release: every statement is released exactly once and pays every ledger entry once.

Months long past their hold are loaded through the store (accesses and their ledger
entries, in the access's own transaction, as the engine writes them); then engine
processes are started: the first dies (``kill -9`` by failpoint) inside a release
transaction, the second right after committing its first release, and then two more run
together until every statement is released. Collected only in the PostgreSQL + S3 pass.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import trio
import trio_asyncio

from engine.config import load_config
from engine.store.postgres.store import PgStore
from tests.conftest import as_env, backend_overrides
from tests.http.money_helpers import charged_access
from tests.multiprocess.test_kill_one_of_three import Engine
from tests.rawdb import query
from tests.test_service import _wait_healthy

PROVIDERS = 12
MONTHS = (1, 2, 3)


async def _load(url: str) -> int:
    async with trio_asyncio.open_loop(), PgStore.open(url) as store:
        n = 0
        for p in range(PROVIDERS):
            for month in MONTHS:
                for i in range(3):
                    amount = 1_000 * (p + 1) + i
                    await charged_access(store, f"tnt_buyer{i}", f"tnt_provider{p:02d}", f"dset_{p}", amount,
                                         datetime(2026, month, 3 + i, tzinfo=UTC))
                    n += 1
        return n


def _wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_settlement_is_exactly_once_across_processes_and_kill_9(tmp_path: Path) -> None:
    overrides = {**backend_overrides(), "actors.lease_ttl_seconds": 3, "actors.scan_seconds": 1, "billing.settle_scan_seconds": 1}
    url = overrides["store.url"]
    cfg = load_config(env={}, overrides={"data_dir": tmp_path / "q", "store.url": url})
    accesses = trio.run(_load, url)
    statements = PROVIDERS * len(MONTHS)
    assert query(cfg, "SELECT count(*) FROM payouts WHERE released_at IS NULL") == [(statements,)]
    env = {**os.environ, **as_env(overrides)}

    mid = Engine(tmp_path / "mid", {**env, "IPTO_FAILPOINTS": "settlement.in_transaction"})
    assert mid.proc.wait(timeout=120) == -signal.SIGKILL  # died inside its first release: rolled back
    mid.stop()
    assert query(cfg, "SELECT count(*) FROM payouts WHERE released_at IS NOT NULL") == [(0,)]
    assert query(cfg, "SELECT count(*) FROM payout_entries") == [(0,)]

    after = Engine(tmp_path / "after", {**env, "IPTO_FAILPOINTS": "settlement.after_release"})
    assert after.proc.wait(timeout=120) == -signal.SIGKILL  # died right after committing one release
    after.stop()
    assert query(cfg, "SELECT count(*) FROM payouts WHERE released_at IS NOT NULL") == [(1,)]

    engines = [Engine(tmp_path / f"p{i}", env) for i in range(2)]
    try:
        for e in engines:
            _wait_healthy(e.url, e.proc, timeout=60)
        _wait_for(lambda: query(cfg, "SELECT count(*) FROM payouts WHERE released_at IS NULL") == [(0,)], 120,
                  "statements left unreleased")
    finally:
        for e in engines:
            e.stop()
    assert query(cfg, "SELECT count(*) FROM payouts") == [(statements,)]
    # each was marked pending (its month ended) before it was released
    assert query(cfg, "SELECT count(*) FROM payouts WHERE pending_at <= released_at") == [(statements,)]
    # every entry paid exactly once, by a statement of its provider
    assert query(cfg, "SELECT count(*), count(DISTINCT ledger_entry_id) FROM payout_entries") == [(accesses * 2, accesses * 2)]
    assert query(cfg, "SELECT count(*) FROM payout_entries x JOIN ledger_entries e ON e.id = x.ledger_entry_id"
                      " JOIN payouts p ON p.id = x.payout_id WHERE p.provider_tenant_id != e.provider_tenant_id"
                      " OR p.period != e.period") == [(0,)]
    for provider, gross, earnings in query(cfg, "SELECT provider_tenant_id, sum(gross_micros), sum(earnings_micros) FROM payouts"
                                                " GROUP BY 1"):
        charges = query(cfg, "SELECT sum(amount_micros) FROM ledger_entries WHERE provider_tenant_id = ? AND kind = 'charge'", provider)
        fees = query(cfg, "SELECT sum(amount_micros) FROM ledger_entries WHERE provider_tenant_id = ? AND kind = 'fee'", provider)
        assert int(gross) == int(charges[0][0]) and int(earnings) == int(charges[0][0]) - int(fees[0][0])
