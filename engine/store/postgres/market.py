"""The marketplace's records in PostgreSQL: grants, who may search what, searches and
impressions, accesses and their ledger entries (mixed into PgStore).

An access, its ledger entries and the pricing they rest on (the buyer's flat-rate month,
the dataset's recent demand) are one SERIALIZABLE transaction: two concurrent accesses
that would both be "the first of the month" cannot both commit; the loser is retried
from the start and prices itself after the winner. A retried access (same principal and
Idempotency-Key) finds the first; two at once collide on the unique index, and the
retried loser finds the winner.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import orjson

from engine.errors import UniqueViolation
from engine.store import webhook_events as ev
from engine.store.market import AccessPricer, PriceInputs
from engine.store.postgres.access import PgAccess, PgConn
from engine.store.postgres.webhooks import emit
from engine.store.records import HIDDEN_FROM_CATALOG, Access, Grant, Impression, LedgerEntry, Searchable, SearchRecord

_ACCESS_COLUMNS = (
    "id", "buyer_tenant_id", "user_id", "api_key_id", "provider_tenant_id", "dataset_id", "object_id", "search_id", "result_id",
    "pricing_model", "monetization_mode", "amount_micros", "fee_micros", "currency", "period", "idempotency_principal",
    "idempotency_key", "created_at",
)
_LEDGER_COLUMNS = (
    "id", "access_id", "kind", "amount_micros", "currency", "buyer_tenant_id", "provider_tenant_id", "dataset_id", "api_key_id",
    "dispute_id", "period", "created_at",
)


def _grant(r: asyncpg.Record) -> Grant:
    return Grant(r["id"], r["dataset_id"], r["tenant_id"], r["created_by"], r["created_at"], r["seq"])


def _search(r: asyncpg.Record) -> SearchRecord:
    return SearchRecord(
        r["id"], r["tenant_id"], r["user_id"], r["api_key_id"], r["query"], r["mode"], tuple(orjson.loads(r["dataset_ids"])),
        tuple(orjson.loads(r["keywords"])), r["result_count"], r["created_at"], r["seq"],
    )


def _access(r: asyncpg.Record) -> Access:
    return Access(**{col: r[col] for col in _ACCESS_COLUMNS}, seq=r["seq"])


def _ledger(r: asyncpg.Record) -> LedgerEntry:
    return LedgerEntry(**{col: r[col] for col in _LEDGER_COLUMNS}, seq=r["seq"])


async def _insert(c: PgConn, table: str, columns: Sequence[str], record: object) -> None:
    await c.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        *(getattr(record, col) for col in columns),
    )


async def price_inputs(c: PgConn, dataset_id: str, buyer_tenant_id: str, period: str, since: datetime) -> PriceInputs:
    paid = await c.fetchval(
        "SELECT 1 FROM accesses WHERE dataset_id = ? AND buyer_tenant_id = ? AND period = ? AND amount_micros > 0 LIMIT 1",
        dataset_id, buyer_tenant_id, period,
    ) is not None
    recent = await c.fetchval(
        "SELECT count(*) FROM accesses WHERE dataset_id = ? AND created_at >= ? AND buyer_tenant_id != provider_tenant_id",
        dataset_id, since,
    )
    return PriceInputs(paid_this_period=paid, recent_accesses=int(recent))


async def _entries(c: PgConn, access_id: str) -> list[LedgerEntry]:
    return [_ledger(r) for r in await c.fetch("SELECT * FROM ledger_entries WHERE access_id = ? ORDER BY seq", access_id)]


class MarketMixin(PgAccess):
    """Grants, discovery, recording and the ledger; relies on ``read``/``write`` of the store."""

    # -- grants -----------------------------------------------------------------------------
    async def create_grant(self, grant: Grant) -> Grant:
        async def op(c: PgConn) -> Grant:
            await _insert(c, "dataset_grants", ("id", "dataset_id", "tenant_id", "created_by", "created_at"), grant)
            return _grant(await c.fetchrow("SELECT * FROM dataset_grants WHERE id = ?", grant.id))

        return await self.write(op)

    async def get_grant(self, dataset_id: str, grant_id: str) -> Grant | None:
        return await self.one(_grant, "SELECT * FROM dataset_grants WHERE id = ? AND dataset_id = ?", (grant_id, dataset_id))

    async def find_grant(self, dataset_id: str, tenant_id: str) -> Grant | None:
        return await self.one(_grant, "SELECT * FROM dataset_grants WHERE dataset_id = ? AND tenant_id = ?", (dataset_id, tenant_id))

    async def list_grants(self, dataset_id: str, after: int | None, limit: int) -> list[Grant]:
        return await self.newest_page(_grant, "dataset_grants", ["dataset_id = ?"], [dataset_id], after, limit)

    async def delete_grant(self, dataset_id: str, grant_id: str) -> bool:
        return bool(await self.write(lambda c: c.execute("DELETE FROM dataset_grants WHERE id = ? AND dataset_id = ?", grant_id, dataset_id)))

    # -- discovery ----------------------------------------------------------------------------
    async def searchable_datasets(self, tenant_id: str) -> list[Searchable]:
        """The tenant's own live datasets, and others' listed ones or restricted ones it holds
        a grant for, unless paused, suspended or being deleted."""
        rows = await self.read(lambda c: c.fetch(
            "SELECT id, seq, tenant_id, visibility, monetization_mode, status FROM datasets"
            " WHERE tenant_id = ? AND status NOT IN ('pending_deletion', 'deleted')"
            " UNION ALL SELECT id, seq, tenant_id, visibility, monetization_mode, status FROM datasets"
            " WHERE tenant_id != ? AND status != ALL(?::text[]) AND (visibility = 'listed' OR (visibility = 'restricted'"
            " AND id IN (SELECT dataset_id FROM dataset_grants WHERE tenant_id = ?)))",
            tenant_id, tenant_id, list(HIDDEN_FROM_CATALOG), tenant_id,
        ))
        return [Searchable(r[0], int(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    # -- recording ------------------------------------------------------------------------------
    async def record_searches(
        self, searches: Sequence[SearchRecord], impressions: Sequence[Impression], more_results: Sequence[tuple[str, int]]
    ) -> None:
        """A batch of searches, impressions and later pages' result counts, in one transaction."""

        async def op(c: PgConn) -> None:
            if searches:
                await c.executemany(
                    "INSERT INTO searches (id, tenant_id, user_id, api_key_id, query, mode, dataset_ids, keywords, result_count,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    [(s.id, s.tenant_id, s.user_id, s.api_key_id, s.query, s.mode, orjson.dumps(list(s.dataset_ids)).decode(),
                      orjson.dumps(list(s.keywords)).decode(), s.result_count, s.created_at) for s in searches],
                )
            if impressions:
                await c.executemany(
                    "INSERT INTO impressions (search_id, rank, dataset_id, provider_tenant_id, buyer_tenant_id, object_id,"
                    " chunk_index, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (search_id, rank) DO NOTHING",
                    [(i.search_id, i.rank, i.dataset_id, i.provider_tenant_id, i.buyer_tenant_id, i.object_id, i.chunk_index,
                      i.created_at) for i in impressions],
                )
            if more_results:
                await c.executemany("UPDATE searches SET result_count = result_count + ? WHERE id = ?", [(n, s) for s, n in more_results])

        await self.write(op)

    async def get_search(self, tenant_id: str, search_id: str) -> SearchRecord | None:
        return await self.one(_search, "SELECT * FROM searches WHERE id = ? AND tenant_id = ?", (search_id, tenant_id))

    async def list_impressions(self, search_id: str) -> list[Impression]:
        rows = await self.read(lambda c: c.fetch("SELECT * FROM impressions WHERE search_id = ? ORDER BY rank", search_id))
        return [Impression(r["search_id"], r["rank"], r["dataset_id"], r["provider_tenant_id"], r["buyer_tenant_id"], r["object_id"],
                           r["chunk_index"], r["created_at"]) for r in rows]

    # -- accesses and the ledger -------------------------------------------------------------------
    async def record_access(self, draft: Access, pricer: AccessPricer, since: datetime) -> tuple[Access, list[LedgerEntry], bool]:
        """Price ``draft`` and write it with its ledger entries, atomically; or return the
        access its (idempotency principal, key) already made. ``(access, entries, created)``."""

        async def find(c: PgConn) -> tuple[Access, list[LedgerEntry], bool] | None:
            if draft.idempotency_key is None:
                return None
            row = await c.fetchrow(
                "SELECT * FROM accesses WHERE idempotency_principal = ? AND idempotency_key = ?",
                draft.idempotency_principal, draft.idempotency_key,
            )
            if row is None:
                return None
            existing = _access(row)
            return existing, await _entries(c, existing.id), False

        async def op(c: PgConn) -> tuple[Access, list[LedgerEntry], bool]:
            found = await find(c)
            if found is not None:
                return found
            access, entries = pricer(draft, await price_inputs(c, draft.dataset_id, draft.buyer_tenant_id, draft.period, since))
            await _insert(c, "accesses", _ACCESS_COLUMNS, access)
            for entry in entries:
                await _insert(c, "ledger_entries", _LEDGER_COLUMNS, entry)
            if entries:
                from engine.store.postgres.money import ensure_statement  # its module imports this one

                await ensure_statement(c, access.provider_tenant_id, access.period, access.currency, access.created_at)
            await emit(c, access.provider_tenant_id, "access.created", ev.access_created(access), access.created_at)
            return _access(await c.fetchrow("SELECT * FROM accesses WHERE id = ?", access.id)), await _entries(c, access.id), True

        try:
            return await self.write(op)
        except UniqueViolation:
            found = await self.read(find)  # a concurrent twin with the same Idempotency-Key won
            if found is None:
                raise
            return found

    async def get_access(self, tenant_id: str, access_id: str) -> Access | None:
        return await self.one(_access, "SELECT * FROM accesses WHERE id = ? AND buyer_tenant_id = ?", (access_id, tenant_id))

    async def ledger_for_access(self, access_id: str) -> list[LedgerEntry]:
        return await self.read(lambda c: _entries(c, access_id))

    async def price_inputs(self, dataset_id: str, buyer_tenant_id: str, period: str, since: datetime) -> PriceInputs:
        return await self.read(lambda c: price_inputs(c, dataset_id, buyer_tenant_id, period, since))

    async def recent_access_counts(self, dataset_ids: Sequence[str], since: datetime) -> dict[str, int]:
        rows = await self.read(lambda c: c.fetch(
            "SELECT dataset_id, count(*) FROM accesses WHERE dataset_id = ANY(?::text[]) AND created_at >= ?"
            " AND buyer_tenant_id != provider_tenant_id GROUP BY dataset_id", list(dataset_ids), since))
        return {r[0]: int(r[1]) for r in rows}

    async def paid_datasets(self, buyer_tenant_id: str, dataset_ids: Sequence[str], period: str) -> set[str]:
        rows = await self.read(lambda c: c.fetch(
            "SELECT DISTINCT dataset_id FROM accesses WHERE buyer_tenant_id = ? AND period = ? AND amount_micros > 0"
            " AND dataset_id = ANY(?::text[])", buyer_tenant_id, period, list(dataset_ids)))
        return {r[0] for r in rows}
