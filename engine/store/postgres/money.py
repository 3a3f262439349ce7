"""Money after the access in PostgreSQL: buyer activity and spend, disputes, payout
statements and their settlement, provider analytics (mixed into PgStore).

Writes are SERIALIZABLE (``PgAccess.write``), so a dispute opened while a settlement
runs, or two processes settling at once, cannot both act on a stale view: one of them is
retried and sees the other's commit. Settlement also takes the statement's row ``FOR
UPDATE SKIP LOCKED``, as jobs are claimed: a process never waits on a statement another
is releasing, and the released row is skipped afterwards (``released_at`` is set), so each
statement is released exactly once whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from engine import failpoints
from engine.errors import Conflict, NotDisputable, NotFound
from engine.ids import new_id
from engine.store import webhook_events as ev
from engine.store.money import (
    AccessView,
    Dispute,
    Payout,
    ProviderUsage,
    RefundEntries,
    SpendRows,
    UnreleasedSum,
    month_bounds,
    statement_amounts,
)
from engine.store.postgres.access import PgAccess, PgConn
from engine.store.postgres.market import _LEDGER_COLUMNS, _access, _insert, _search
from engine.store.postgres.webhooks import emit
from engine.store.records import SearchRecord

_DISPUTE_COLUMNS = ("id", "access_id", "buyer_tenant_id", "provider_tenant_id", "dataset_id", "amount_micros", "currency", "period",
                    "reason", "status", "opened_by", "created_at", "resolved_at", "resolved_by")
_DAY = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_GROUP_KEY = {"day": _DAY, "dataset": "dataset_id", "api_key": "api_key_id"}


def _dispute(r: asyncpg.Record) -> Dispute:
    return Dispute(**{col: r[col] for col in _DISPUTE_COLUMNS}, seq=r["seq"])


def _payout(r: asyncpg.Record) -> Payout:
    return Payout(**dict(r.items()))


def _range(where: list[str], params: list[Any], since: datetime | None, until: datetime | None, column: str = "created_at") -> None:
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        where.append(f"{column} < ?")
        params.append(until)


async def ensure_statement(c: PgConn, provider_tenant_id: str, period: str, currency: str, now: datetime) -> None:
    """The statement row of (provider, month, currency): the durable settlement deadline."""
    start, end = month_bounds(period)
    await c.execute(
        "INSERT INTO payouts (id, provider_tenant_id, period, currency, period_start, period_end, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider_tenant_id, period, currency) DO NOTHING",
        new_id("pay"), provider_tenant_id, period, currency, start, end, now,
    )


async def _released(c: PgConn, access_id: str) -> bool:
    return await c.fetchval(
        "SELECT 1 FROM ledger_entries e JOIN payout_entries p ON p.ledger_entry_id = e.id WHERE e.access_id = ? LIMIT 1", access_id
    ) is not None


class MoneyMixin(PgAccess):
    """Activity, spend, disputes, payouts and analytics; relies on ``read``/``write`` of the store."""

    # -- buyer activity and spend ----------------------------------------------------------------
    async def list_searches(self, tenant_id: str, api_key_id: str | None, since: datetime | None, until: datetime | None,
                            after: int | None, limit: int) -> list[SearchRecord]:
        where, params = ["tenant_id = ?"], [tenant_id]
        if api_key_id is not None:
            where.append("api_key_id = ?")
            params.append(api_key_id)
        _range(where, params, since, until)
        return await self.newest_page(_search, "searches", where, params, after, limit)

    async def list_accesses(self, tenant_id: str, api_key_id: str | None, dataset_id: str | None, since: datetime | None,
                            until: datetime | None, after: int | None, limit: int) -> list[AccessView]:
        where, params = ["a.buyer_tenant_id = ?"], list[Any]([tenant_id])
        for column, value in (("a.api_key_id", api_key_id), ("a.dataset_id", dataset_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        _range(where, params, since, until, "a.created_at")
        if after is not None:
            where.append("a.seq < ?")
            params.append(after)
        sql = (f"SELECT a.*, d.id IS NOT NULL AS disputed FROM accesses a LEFT JOIN disputes d ON d.access_id = a.id"
               f" WHERE {' AND '.join(where)} ORDER BY a.seq DESC LIMIT ?")

        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch(sql, *params, limit)

        return [AccessView(_access(r), bool(r["disputed"])) for r in await self.read(op)]

    async def spend_rows(self, tenant_id: str, currency: str, group_by: str, since: datetime | None,
                         until: datetime | None) -> SpendRows:
        key = _GROUP_KEY[group_by]
        where, params = ["buyer_tenant_id = ?", "currency = ?"], [tenant_id, currency]
        _range(where, params, since, until)
        cond = " AND ".join(where)

        async def op(c: PgConn) -> SpendRows:
            groups: dict[str | None, tuple[int, int]] = {}
            for k, n in await c.fetch(f"SELECT {key}, count(*) FROM accesses WHERE {cond} GROUP BY 1", *params):
                groups[k] = (0, int(n))
            for k, amount in await c.fetch(f"SELECT {key}, sum(amount_micros) FROM ledger_entries WHERE {cond} AND kind = 'charge'"
                                           " GROUP BY 1", *params):
                groups[k] = (int(amount), groups.get(k, (0, 0))[1])
            refunds = await c.fetchval(f"SELECT coalesce(-sum(amount_micros), 0) FROM ledger_entries WHERE {cond} AND kind = 'refund'",
                                       *params)
            return SpendRows(groups, int(refunds))

        return await self.read(op)

    # -- disputes -----------------------------------------------------------------------------
    async def open_dispute(self, dispute: Dispute) -> Dispute | None:
        async def op(c: PgConn) -> Dispute | None:
            if await c.fetchval("SELECT 1 FROM disputes WHERE access_id = ?", dispute.access_id) is not None:
                return None
            if await _released(c, dispute.access_id):
                raise NotDisputable("this access's month was already paid out: it can no longer be disputed",
                               {"access_id": dispute.access_id})
            await _insert(c, "disputes", _DISPUTE_COLUMNS, dispute)
            opened = _dispute(await c.fetchrow("SELECT * FROM disputes WHERE id = ?", dispute.id))
            await emit(c, opened.provider_tenant_id, "dispute.opened", ev.dispute_data(opened), opened.created_at)
            return opened

        return await self.write(op)

    async def get_dispute(self, dispute_id: str) -> Dispute | None:
        return await self.one(_dispute, "SELECT * FROM disputes WHERE id = ?", (dispute_id,))

    async def list_disputes(self, status: str | None, after: int | None, limit: int) -> list[Dispute]:
        where, params = (["status = ?"], [status]) if status else (["true"], [])
        return await self.newest_page(_dispute, "disputes", where, params, after, limit)

    async def resolve_dispute(self, dispute_id: str, outcome: str, by: str, now: datetime, refund: RefundEntries,
                              carry: Payout) -> Dispute:
        async def op(c: PgConn) -> Dispute:
            row = await c.fetchrow("SELECT * FROM disputes WHERE id = ? FOR UPDATE", dispute_id)
            if row is None:
                raise NotFound("dispute not found")
            dispute = _dispute(row)
            if dispute.status != "open":
                raise Conflict(f"the dispute was already resolved ({dispute.status})", {"status": dispute.status})
            await c.execute("UPDATE disputes SET status = ?, resolved_at = ?, resolved_by = ? WHERE id = ?", outcome, now, by, dispute_id)
            if outcome == "refunded":
                access = _access(await c.fetchrow("SELECT * FROM accesses WHERE id = ?", dispute.access_id))
                for entry in refund(access, dispute):
                    await _insert(c, "ledger_entries", _LEDGER_COLUMNS, entry)
            released = await c.fetchrow("SELECT released_at FROM payouts WHERE provider_tenant_id = ? AND period = ? AND currency = ?",
                                        dispute.provider_tenant_id, dispute.period, dispute.currency)
            if released is not None and released[0] is not None:
                await ensure_statement(c, carry.provider_tenant_id, carry.period, carry.currency, now)
            resolved = _dispute(await c.fetchrow("SELECT * FROM disputes WHERE id = ?", dispute_id))
            for tenant in dict.fromkeys((resolved.provider_tenant_id, resolved.buyer_tenant_id)):
                await emit(c, tenant, "dispute.resolved", ev.dispute_data(resolved), now)
            return resolved

        return await self.write(op)

    # -- payouts ------------------------------------------------------------------------------
    async def list_payouts(self, provider_tenant_id: str, since: datetime | None, until: datetime | None,
                           after: int | None, limit: int) -> list[Payout]:
        where, params = ["provider_tenant_id = ?"], [provider_tenant_id]
        _range(where, params, since, until, "period_start")
        return await self.newest_page(_payout, "payouts", where, params, after, limit)

    async def unreleased_payouts(self, provider_tenant_id: str) -> list[Payout]:
        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch("SELECT * FROM payouts WHERE provider_tenant_id = ? AND released_at IS NULL ORDER BY period",
                                 provider_tenant_id)

        return [_payout(r) for r in await self.read(op)]

    async def unreleased_sums(self, provider_tenant_id: str) -> list[UnreleasedSum]:
        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch(
                "SELECT e.period, e.currency, e.kind, EXISTS (SELECT 1 FROM disputes d WHERE d.access_id = e.access_id"
                " AND d.status = 'open') AS held, sum(e.amount_micros) FROM ledger_entries e"
                " WHERE e.provider_tenant_id = ? AND NOT EXISTS (SELECT 1 FROM payout_entries p WHERE p.ledger_entry_id = e.id)"
                " GROUP BY 1, 2, 3, 4", provider_tenant_id)

        return [UnreleasedSum(r[0], r[1], r[2], bool(r[3]), int(r[4])) for r in await self.read(op)]

    async def next_settlement(self) -> tuple[datetime | None, datetime | None]:
        async def op(c: PgConn) -> tuple[datetime | None, datetime | None]:
            row = await c.fetchrow("SELECT min(period_end) FILTER (WHERE pending_at IS NULL), min(period_end) FROM payouts"
                                   " WHERE released_at IS NULL")
            assert row is not None  # an aggregate always answers one row
            return row[0], row[1]

        return await self.read(op)

    async def mark_pending(self, now: datetime, hold: timedelta) -> list[Payout]:
        async def op(c: PgConn) -> list[Payout]:
            marked = [_payout(r) for r in await c.fetch(
                "UPDATE payouts SET pending_at = ? WHERE pending_at IS NULL AND period_end <= ? RETURNING *", now, now)]
            for p in marked:
                await emit(c, p.provider_tenant_id, "payout.pending", ev.payout_pending(p, p.period_end + hold), now)
            return marked

        return await self.write(op)

    async def due_payouts(self, ended_before: datetime) -> list[str]:
        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch(
                "SELECT p.id FROM payouts p WHERE p.released_at IS NULL AND p.pending_at IS NOT NULL AND p.period_end <= ? AND NOT EXISTS (SELECT 1 FROM payouts q"
                " WHERE q.provider_tenant_id = p.provider_tenant_id AND q.currency = p.currency AND q.released_at IS NULL"
                " AND q.period < p.period) ORDER BY p.period_end, p.seq", ended_before)

        return [r[0] for r in await self.read(op)]

    async def settle_payout(self, payout_id: str, now: datetime) -> Payout | None:
        async def op(c: PgConn) -> Payout | None:
            row = await c.fetchrow("SELECT * FROM payouts WHERE id = ? AND released_at IS NULL AND pending_at IS NOT NULL"
                                   " FOR UPDATE SKIP LOCKED", payout_id)
            if row is None:
                return None
            p = _payout(row)
            if await c.fetchval("SELECT 1 FROM payouts WHERE provider_tenant_id = ? AND currency = ? AND released_at IS NULL"
                                " AND period < ?", p.provider_tenant_id, p.currency, p.period) is not None:
                return None
            scope = ("FROM ledger_entries e WHERE e.provider_tenant_id = ? AND e.currency = ? AND e.period <= ?"
                     " AND NOT EXISTS (SELECT 1 FROM payout_entries x WHERE x.ledger_entry_id = e.id)")
            args = (p.provider_tenant_id, p.currency, p.period)
            await c.execute(f"INSERT INTO payout_entries (ledger_entry_id, payout_id) SELECT e.id, ?::text {scope}"
                            " AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.access_id = e.access_id AND d.status = 'open')",
                            payout_id, *args)
            failpoints.hit("settlement.in_transaction")  # crash tests: die with the release half-written
            sums = {r[0]: r[1] for r in await c.fetch(
                "SELECT e.kind, sum(e.amount_micros) FROM ledger_entries e JOIN payout_entries x ON x.ledger_entry_id = e.id"
                " WHERE x.payout_id = ? GROUP BY 1", payout_id)}
            held = await c.fetchval(f"SELECT coalesce(sum(e.amount_micros), 0) {scope} AND e.kind = 'charge'", *args)
            amounts = statement_amounts(sums, int(held))
            await c.execute("UPDATE payouts SET released_at = ?, gross_micros = ?, fee_micros = ?, refunds_micros = ?, held_micros = ?,"
                            " earnings_micros = ? WHERE id = ?", now, *amounts, payout_id)
            released = _payout(await c.fetchrow("SELECT * FROM payouts WHERE id = ?", payout_id))
            await emit(c, released.provider_tenant_id, "payout.released", ev.payout_data(released), now)
            return released

        return await self.write(op)

    # -- provider analytics -----------------------------------------------------------------------
    async def provider_usage(self, provider_tenant_id: str, dataset_id: str | None, currency: str, since: datetime | None,
                             until: datetime | None, stop_words: Sequence[str], top: int) -> ProviderUsage:
        where, params = ["provider_tenant_id = ?", "buyer_tenant_id != provider_tenant_id"], list[Any]([provider_tenant_id])
        if dataset_id is not None:
            where.append("dataset_id = ?")
            params.append(dataset_id)
        _range(where, params, since, until)
        cond = " AND ".join(where)
        lwhere, lparams = ["provider_tenant_id = ?", "currency = ?"], list[Any]([provider_tenant_id, currency])
        if dataset_id is not None:
            lwhere.append("dataset_id = ?")
            lparams.append(dataset_id)
        _range(lwhere, lparams, since, until)

        async def op(c: PgConn) -> ProviderUsage:
            by_dataset = [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in await c.fetch(
                f"SELECT dataset_id, count(*), sum(rank), count(*) FILTER (WHERE rank <= 3) FROM impressions WHERE {cond}"
                " GROUP BY 1 ORDER BY 1", *params)]
            searches = await c.fetchval(f"SELECT count(DISTINCT search_id) FROM impressions WHERE {cond}", *params)
            counts = await c.fetchrow(f"SELECT count(*), count(DISTINCT buyer_tenant_id) FROM accesses WHERE {cond}", *params)
            assert counts is not None
            keywords = [(r[0], int(r[1])) for r in await c.fetch(
                "SELECT k, count(DISTINCT s.seq) FROM searches s, jsonb_array_elements_text(s.keywords::jsonb) k"
                f" WHERE s.id IN (SELECT search_id FROM impressions WHERE {cond})"
                f" AND k != ALL(?::text[]) GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?", *params, list(stop_words), top)]
            revenue = [(r[0], r[1], r[2], int(r[3])) for r in await c.fetch(
                f"SELECT dataset_id, {_DAY}, kind, sum(amount_micros) FROM ledger_entries WHERE {' AND '.join(lwhere)}"
                " GROUP BY 1, 2, 3", *lparams)]
            return ProviderUsage(int(searches), int(counts[0]), int(counts[1]), by_dataset, keywords, revenue)

        return await self.read(op)

    async def money_totals(self) -> dict[str, int]:
        async def op(c: PgConn) -> dict[str, int]:
            out = {r[0]: int(r[1]) for r in await c.fetch("SELECT kind, sum(amount_micros) FROM ledger_entries GROUP BY 1")}
            out.update({f"released:{r[0]}": int(r[1]) for r in await c.fetch(
                "SELECT e.kind, sum(e.amount_micros) FROM ledger_entries e JOIN payout_entries p ON p.ledger_entry_id = e.id GROUP BY 1")})
            return out

        return await self.read(op)
