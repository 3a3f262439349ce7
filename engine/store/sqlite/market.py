"""The marketplace's records in SQLite: grants, who may search what, searches and
impressions, accesses and their ledger entries (mixed into SqliteStore).

An access and its ledger entries are one transaction, and so is the pricing they rest on
(the buyer's flat-rate month, the dataset's recent demand): SQLite's single writer makes
the read and the write one step, so two concurrent accesses can never both be "the first
of the month". A retried access (same principal and Idempotency-Key) finds the first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

import orjson

from engine.store import webhook_events as ev
from engine.store.market import AccessPricer, PriceInputs
from engine.store.records import HIDDEN_FROM_CATALOG, Access, Grant, Impression, LedgerEntry, Searchable, SearchRecord
from engine.store.sqlite.access import SqliteAccess
from engine.store.sqlite.sqltime import dt, ts
from engine.store.sqlite.webhooks import emit

_ACCESS_COLUMNS = (
    "id", "buyer_tenant_id", "user_id", "api_key_id", "provider_tenant_id", "dataset_id", "object_id", "search_id", "result_id",
    "pricing_model", "monetization_mode", "amount_micros", "fee_micros", "currency", "period", "idempotency_principal",
    "idempotency_key", "created_at",
)
_LEDGER_COLUMNS = (
    "id", "access_id", "kind", "amount_micros", "currency", "buyer_tenant_id", "provider_tenant_id", "dataset_id", "api_key_id",
    "dispute_id", "period", "created_at",
)
_HIDDEN = ", ".join(f"'{s}'" for s in HIDDEN_FROM_CATALOG)


def _grant(r: sqlite3.Row) -> Grant:
    return Grant(r["id"], r["dataset_id"], r["tenant_id"], r["created_by"], dt(r["created_at"]), r["seq"])  # type: ignore[arg-type]


def _search(r: sqlite3.Row) -> SearchRecord:
    return SearchRecord(
        r["id"], r["tenant_id"], r["user_id"], r["api_key_id"], r["query"], r["mode"], tuple(orjson.loads(r["dataset_ids"])),
        tuple(orjson.loads(r["keywords"])), r["result_count"], dt(r["created_at"]), r["seq"],  # type: ignore[arg-type]
    )


def _access(r: sqlite3.Row) -> Access:
    values = {col: r[col] for col in _ACCESS_COLUMNS}
    values["created_at"] = dt(values["created_at"])
    return Access(**values, seq=r["seq"])


def _ledger(r: sqlite3.Row) -> LedgerEntry:
    values = {col: r[col] for col in _LEDGER_COLUMNS}
    values["created_at"] = dt(values["created_at"])
    return LedgerEntry(**values, seq=r["seq"])


def _insert(c: sqlite3.Connection, table: str, columns: Sequence[str], record: object) -> None:
    values = [getattr(record, col) for col in columns]
    c.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [ts(v) if isinstance(v, datetime) else v for v in values],
    )


def price_inputs(c: sqlite3.Connection, dataset_id: str, buyer_tenant_id: str, period: str, since: datetime) -> PriceInputs:
    """What a price depends on, read in the caller's transaction."""
    paid = c.execute(
        "SELECT 1 FROM accesses WHERE dataset_id = ? AND buyer_tenant_id = ? AND period = ? AND amount_micros > 0 LIMIT 1",
        (dataset_id, buyer_tenant_id, period),
    ).fetchone() is not None
    (recent,) = c.execute(
        "SELECT count(*) FROM accesses WHERE dataset_id = ? AND created_at >= ? AND buyer_tenant_id != provider_tenant_id",
        (dataset_id, ts(since)),
    ).fetchone()
    return PriceInputs(paid_this_period=paid, recent_accesses=int(recent))


class MarketMixin(SqliteAccess):
    """Grants, discovery, recording and the ledger; relies on ``read``/``write`` of the store."""

    # -- grants -----------------------------------------------------------------------------
    async def create_grant(self, grant: Grant) -> Grant:
        def op(c: sqlite3.Connection) -> Grant:
            _insert(c, "dataset_grants", ("id", "dataset_id", "tenant_id", "created_by", "created_at"), grant)
            return _grant(c.execute("SELECT * FROM dataset_grants WHERE id = ?", (grant.id,)).fetchone())

        return await self.write(op, quick=True)

    async def get_grant(self, dataset_id: str, grant_id: str) -> Grant | None:
        return await self.one(_grant, "SELECT * FROM dataset_grants WHERE id = ? AND dataset_id = ?", (grant_id, dataset_id))

    async def find_grant(self, dataset_id: str, tenant_id: str) -> Grant | None:
        return await self.one(_grant, "SELECT * FROM dataset_grants WHERE dataset_id = ? AND tenant_id = ?", (dataset_id, tenant_id))

    async def list_grants(self, dataset_id: str, after: int | None, limit: int) -> list[Grant]:
        return await self.newest_page(_grant, "dataset_grants", ["dataset_id = ?"], [dataset_id], after, limit)

    async def delete_grant(self, dataset_id: str, grant_id: str) -> bool:
        return bool(await self.write(
            lambda c: c.execute("DELETE FROM dataset_grants WHERE id = ? AND dataset_id = ?", (grant_id, dataset_id)).rowcount,
            quick=True,
        ))

    # -- discovery ----------------------------------------------------------------------------
    async def searchable_datasets(self, tenant_id: str) -> list[Searchable]:
        """The tenant's own live datasets, and others' listed ones or restricted ones it holds
        a grant for, unless paused, suspended or being deleted."""
        rows = await self.read(
            lambda c: c.execute(
                "SELECT id, seq, tenant_id, visibility, monetization_mode, status FROM datasets"
                " WHERE tenant_id = ? AND status NOT IN ('pending_deletion', 'deleted')"
                " UNION ALL SELECT id, seq, tenant_id, visibility, monetization_mode, status FROM datasets"
                f" WHERE tenant_id != ? AND status NOT IN ({_HIDDEN}) AND (visibility = 'listed' OR (visibility = 'restricted'"
                " AND id IN (SELECT dataset_id FROM dataset_grants WHERE tenant_id = ?)))",
                (tenant_id, tenant_id, tenant_id),
            ).fetchall(),
            quick=True,
        )
        return [Searchable(r[0], int(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    # -- recording ------------------------------------------------------------------------------
    async def record_searches(
        self, searches: Sequence[SearchRecord], impressions: Sequence[Impression], more_results: Sequence[tuple[str, int]]
    ) -> None:
        """A batch of searches, impressions and later pages' result counts, in one
        transaction that does not wait for the disk (the next durable commit covers it)."""

        def op(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT OR IGNORE INTO searches (id, tenant_id, user_id, api_key_id, query, mode, dataset_ids, keywords, result_count,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(s.id, s.tenant_id, s.user_id, s.api_key_id, s.query, s.mode, orjson.dumps(list(s.dataset_ids)).decode(),
                  orjson.dumps(list(s.keywords)).decode(), s.result_count, ts(s.created_at)) for s in searches],
            )
            c.executemany(
                "INSERT OR IGNORE INTO impressions (search_id, rank, dataset_id, provider_tenant_id, buyer_tenant_id, object_id,"
                " chunk_index, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(i.search_id, i.rank, i.dataset_id, i.provider_tenant_id, i.buyer_tenant_id, i.object_id, i.chunk_index,
                  ts(i.created_at)) for i in impressions],
            )
            c.executemany("UPDATE searches SET result_count = result_count + ? WHERE id = ?", [(n, s) for s, n in more_results])

        await self.write(op, durable=False)

    async def get_search(self, tenant_id: str, search_id: str) -> SearchRecord | None:
        return await self.one(_search, "SELECT * FROM searches WHERE id = ? AND tenant_id = ?", (search_id, tenant_id))

    async def list_impressions(self, search_id: str) -> list[Impression]:
        rows = await self.read(lambda c: c.execute("SELECT * FROM impressions WHERE search_id = ? ORDER BY rank", (search_id,)).fetchall())
        return [Impression(r["search_id"], r["rank"], r["dataset_id"], r["provider_tenant_id"], r["buyer_tenant_id"], r["object_id"],
                           r["chunk_index"], dt(r["created_at"])) for r in rows]  # type: ignore[arg-type]

    # -- accesses and the ledger -------------------------------------------------------------------
    async def record_access(self, draft: Access, pricer: AccessPricer, since: datetime) -> tuple[Access, list[LedgerEntry], bool]:
        """Price ``draft`` and write it with its ledger entries, atomically; or, when its
        (idempotency principal, key) already made an access, return that one.
        ``(access, its ledger entries, whether this call wrote it)``."""

        def op(c: sqlite3.Connection) -> tuple[Access, list[LedgerEntry], bool]:
            if draft.idempotency_key is not None:
                row = c.execute(
                    "SELECT * FROM accesses WHERE idempotency_principal = ? AND idempotency_key = ?",
                    (draft.idempotency_principal, draft.idempotency_key),
                ).fetchone()
                if row is not None:
                    existing = _access(row)
                    return existing, _entries(c, existing.id), False
            access, entries = pricer(draft, price_inputs(c, draft.dataset_id, draft.buyer_tenant_id, draft.period, since))
            _insert(c, "accesses", _ACCESS_COLUMNS, access)
            for entry in entries:
                _insert(c, "ledger_entries", _LEDGER_COLUMNS, entry)
            if entries:
                from engine.store.sqlite.money import ensure_statement  # its module imports this one

                ensure_statement(c, access.provider_tenant_id, access.period, access.currency, access.created_at)
            emit(c, access.provider_tenant_id, "access.created", ev.access_created(access), access.created_at)
            return _access(c.execute("SELECT * FROM accesses WHERE id = ?", (access.id,)).fetchone()), _entries(c, access.id), True

        return await self.write(op)

    async def get_access(self, tenant_id: str, access_id: str) -> Access | None:
        return await self.one(_access, "SELECT * FROM accesses WHERE id = ? AND buyer_tenant_id = ?", (access_id, tenant_id))

    async def ledger_for_access(self, access_id: str) -> list[LedgerEntry]:
        return await self.read(lambda c: _entries(c, access_id))

    async def price_inputs(self, dataset_id: str, buyer_tenant_id: str, period: str, since: datetime) -> PriceInputs:
        return await self.read(lambda c: price_inputs(c, dataset_id, buyer_tenant_id, period, since))

    async def recent_access_counts(self, dataset_ids: Sequence[str], since: datetime) -> dict[str, int]:
        """Accesses by tenants other than the owner since ``since``, per dataset (demand curve)."""
        wanted = orjson.dumps(list(dataset_ids)).decode()
        rows = await self.read(
            lambda c: c.execute(
                "SELECT dataset_id, count(*) FROM accesses WHERE dataset_id IN (SELECT value FROM json_each(?)) AND created_at >= ?"
                " AND buyer_tenant_id != provider_tenant_id GROUP BY dataset_id",
                (wanted, ts(since)),
            ).fetchall()
        )
        return {r[0]: int(r[1]) for r in rows}

    async def paid_datasets(self, buyer_tenant_id: str, dataset_ids: Sequence[str], period: str) -> set[str]:
        """Which datasets the buyer already paid for in ``period`` (flat rate)."""
        wanted = orjson.dumps(list(dataset_ids)).decode()
        rows = await self.read(
            lambda c: c.execute(
                "SELECT DISTINCT dataset_id FROM accesses WHERE buyer_tenant_id = ? AND period = ? AND amount_micros > 0"
                " AND dataset_id IN (SELECT value FROM json_each(?))",
                (buyer_tenant_id, period, wanted),
            ).fetchall()
        )
        return {r[0] for r in rows}



def _entries(c: sqlite3.Connection, access_id: str) -> list[LedgerEntry]:
    return [_ledger(r) for r in c.execute("SELECT * FROM ledger_entries WHERE access_id = ? ORDER BY seq", (access_id,))]

