"""Money after the access in SQLite: buyer activity and spend, disputes, payout statements
and their settlement, provider analytics (mixed into SqliteStore).

SQLite has one writer at a time, so each write here (open a dispute, resolve it, settle a
statement) reads and writes in one step: a dispute and a settlement can never interleave.
Timestamps are fixed-width ISO text (``sqltime``): ranges compare as strings, the UTC day
is the first ten characters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

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
from engine.store.records import SearchRecord
from engine.store.sqlite.access import SqliteAccess
from engine.store.sqlite.market import _LEDGER_COLUMNS, _access, _insert, _search
from engine.store.sqlite.sqltime import dt, ts
from engine.store.sqlite.webhooks import emit

_DISPUTE_COLUMNS = ("id", "access_id", "buyer_tenant_id", "provider_tenant_id", "dataset_id", "amount_micros", "currency", "period",
                    "reason", "status", "opened_by", "created_at", "resolved_at", "resolved_by")
_PAYOUT_TIMES = ("period_start", "period_end", "created_at", "released_at", "pending_at")
_GROUP_KEY = {"day": "substr(created_at, 1, 10)", "dataset": "dataset_id", "api_key": "api_key_id"}


def _dispute(r: sqlite3.Row) -> Dispute:
    values = {col: r[col] for col in _DISPUTE_COLUMNS}
    for col in ("created_at", "resolved_at"):
        values[col] = dt(values[col])
    return Dispute(**values, seq=r["seq"])


def _payout(r: sqlite3.Row) -> Payout:
    values = {k: r[k] for k in r.keys()}  # noqa: SIM118 - sqlite3.Row iterates values, not keys
    for col in _PAYOUT_TIMES:
        values[col] = dt(values[col])
    return Payout(**values)


def _range(where: list[str], params: list[Any], since: datetime | None, until: datetime | None, column: str = "created_at") -> None:
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(ts(since))
    if until is not None:
        where.append(f"{column} < ?")
        params.append(ts(until))


def ensure_statement(c: sqlite3.Connection, provider_tenant_id: str, period: str, currency: str, now: datetime) -> None:
    """The statement row of (provider, month, currency): the durable settlement deadline."""
    start, end = month_bounds(period)
    c.execute(
        "INSERT INTO payouts (id, provider_tenant_id, period, currency, period_start, period_end, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider_tenant_id, period, currency) DO NOTHING",
        (new_id("pay"), provider_tenant_id, period, currency, ts(start), ts(end), ts(now)),
    )


def _released(c: sqlite3.Connection, access_id: str) -> bool:
    return c.execute(
        "SELECT 1 FROM ledger_entries e JOIN payout_entries p ON p.ledger_entry_id = e.id WHERE e.access_id = ? LIMIT 1", (access_id,)
    ).fetchone() is not None


class MoneyMixin(SqliteAccess):
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
        rows = await self.read(lambda c: c.execute(sql, (*params, limit)).fetchall())
        return [AccessView(_access(r), bool(r["disputed"])) for r in rows]

    async def spend_rows(self, tenant_id: str, currency: str, group_by: str, since: datetime | None,
                         until: datetime | None) -> SpendRows:
        key = _GROUP_KEY[group_by]
        where, params = ["buyer_tenant_id = ?", "currency = ?"], [tenant_id, currency]
        _range(where, params, since, until)
        cond = " AND ".join(where)

        def op(c: sqlite3.Connection) -> SpendRows:
            groups: dict[str | None, tuple[int, int]] = {}
            for k, n in c.execute(f"SELECT {key}, count(*) FROM accesses WHERE {cond} GROUP BY 1", params):
                groups[k] = (0, int(n))
            for k, amount in c.execute(f"SELECT {key}, sum(amount_micros) FROM ledger_entries WHERE {cond} AND kind = 'charge'"
                                       " GROUP BY 1", params):
                groups[k] = (int(amount), groups.get(k, (0, 0))[1])
            (refunds,) = c.execute(f"SELECT coalesce(-sum(amount_micros), 0) FROM ledger_entries WHERE {cond} AND kind = 'refund'",
                                   params).fetchone()
            return SpendRows(groups, int(refunds))

        return await self.read(op)

    # -- disputes -----------------------------------------------------------------------------
    async def open_dispute(self, dispute: Dispute) -> Dispute | None:
        def op(c: sqlite3.Connection) -> Dispute | None:
            if c.execute("SELECT 1 FROM disputes WHERE access_id = ?", (dispute.access_id,)).fetchone() is not None:
                return None
            if _released(c, dispute.access_id):
                raise NotDisputable("this access's month was already paid out: it can no longer be disputed",
                               {"access_id": dispute.access_id})
            _insert(c, "disputes", _DISPUTE_COLUMNS, dispute)
            opened = _dispute(c.execute("SELECT * FROM disputes WHERE id = ?", (dispute.id,)).fetchone())
            emit(c, opened.provider_tenant_id, "dispute.opened", ev.dispute_data(opened), opened.created_at)
            return opened

        return await self.write(op)

    async def get_dispute(self, dispute_id: str) -> Dispute | None:
        return await self.one(_dispute, "SELECT * FROM disputes WHERE id = ?", (dispute_id,))

    async def list_disputes(self, status: str | None, after: int | None, limit: int) -> list[Dispute]:
        where, params = (["status = ?"], [status]) if status else (["1 = 1"], [])
        return await self.newest_page(_dispute, "disputes", where, params, after, limit)

    async def resolve_dispute(self, dispute_id: str, outcome: str, by: str, now: datetime, refund: RefundEntries,
                              carry: Payout) -> Dispute:
        def op(c: sqlite3.Connection) -> Dispute:
            row = c.execute("SELECT * FROM disputes WHERE id = ?", (dispute_id,)).fetchone()
            if row is None:
                raise NotFound("dispute not found")
            dispute = _dispute(row)
            if dispute.status != "open":
                raise Conflict(f"the dispute was already resolved ({dispute.status})", {"status": dispute.status})
            c.execute("UPDATE disputes SET status = ?, resolved_at = ?, resolved_by = ? WHERE id = ?",
                      (outcome, ts(now), by, dispute_id))
            if outcome == "refunded":
                access = _access(c.execute("SELECT * FROM accesses WHERE id = ?", (dispute.access_id,)).fetchone())
                for entry in refund(access, dispute):
                    _insert(c, "ledger_entries", _LEDGER_COLUMNS, entry)
            statement = c.execute("SELECT released_at FROM payouts WHERE provider_tenant_id = ? AND period = ? AND currency = ?",
                                  (dispute.provider_tenant_id, dispute.period, dispute.currency)).fetchone()
            if statement is not None and statement[0] is not None:
                ensure_statement(c, carry.provider_tenant_id, carry.period, carry.currency, now)
            resolved = _dispute(c.execute("SELECT * FROM disputes WHERE id = ?", (dispute_id,)).fetchone())
            for tenant in dict.fromkeys((resolved.provider_tenant_id, resolved.buyer_tenant_id)):
                emit(c, tenant, "dispute.resolved", ev.dispute_data(resolved), now)
            return resolved

        return await self.write(op)

    # -- payouts ------------------------------------------------------------------------------
    async def list_payouts(self, provider_tenant_id: str, since: datetime | None, until: datetime | None,
                           after: int | None, limit: int) -> list[Payout]:
        where, params = ["provider_tenant_id = ?"], list[Any]([provider_tenant_id])
        _range(where, params, since, None, "period_start")
        if until is not None:
            where.append("period_start < ?")
            params.append(ts(until))
        return await self.newest_page(_payout, "payouts", where, params, after, limit)

    async def unreleased_payouts(self, provider_tenant_id: str) -> list[Payout]:
        rows = await self.read(lambda c: c.execute(
            "SELECT * FROM payouts WHERE provider_tenant_id = ? AND released_at IS NULL ORDER BY period", (provider_tenant_id,)).fetchall())
        return [_payout(r) for r in rows]

    async def unreleased_sums(self, provider_tenant_id: str) -> list[UnreleasedSum]:
        rows = await self.read(lambda c: c.execute(
            "SELECT e.period, e.currency, e.kind, EXISTS (SELECT 1 FROM disputes d WHERE d.access_id = e.access_id"
            " AND d.status = 'open') AS held, sum(e.amount_micros) FROM ledger_entries e"
            " WHERE e.provider_tenant_id = ? AND NOT EXISTS (SELECT 1 FROM payout_entries p WHERE p.ledger_entry_id = e.id)"
            " GROUP BY 1, 2, 3, 4", (provider_tenant_id,)).fetchall())
        return [UnreleasedSum(r[0], r[1], r[2], bool(r[3]), int(r[4])) for r in rows]

    async def next_settlement(self) -> tuple[datetime | None, datetime | None]:
        row = await self.read(lambda c: c.execute(
            "SELECT min(CASE WHEN pending_at IS NULL THEN period_end END), min(period_end) FROM payouts WHERE released_at IS NULL"
        ).fetchone())
        return dt(row[0]), dt(row[1])

    async def mark_pending(self, now: datetime, hold: timedelta) -> list[Payout]:
        def op(c: sqlite3.Connection) -> list[Payout]:
            marked = [_payout(r) for r in c.execute(
                "UPDATE payouts SET pending_at = ? WHERE pending_at IS NULL AND period_end <= ? RETURNING *", (ts(now), ts(now))
            ).fetchall()]
            for p in marked:
                emit(c, p.provider_tenant_id, "payout.pending", ev.payout_pending(p, p.period_end + hold), now)
            return marked

        return await self.write(op)

    async def due_payouts(self, ended_before: datetime) -> list[str]:
        rows = await self.read(lambda c: c.execute(
            "SELECT p.id FROM payouts p WHERE p.released_at IS NULL AND p.pending_at IS NOT NULL AND p.period_end <= ? AND NOT EXISTS (SELECT 1 FROM payouts q"
            " WHERE q.provider_tenant_id = p.provider_tenant_id AND q.currency = p.currency AND q.released_at IS NULL"
            " AND q.period < p.period) ORDER BY p.period_end, p.seq", (ts(ended_before),)).fetchall())
        return [r[0] for r in rows]

    async def settle_payout(self, payout_id: str, now: datetime) -> Payout | None:
        def op(c: sqlite3.Connection) -> Payout | None:
            row = c.execute("SELECT * FROM payouts WHERE id = ? AND released_at IS NULL AND pending_at IS NOT NULL",
                            (payout_id,)).fetchone()
            if row is None:
                return None
            p = _payout(row)
            if c.execute("SELECT 1 FROM payouts WHERE provider_tenant_id = ? AND currency = ? AND released_at IS NULL AND period < ?",
                         (p.provider_tenant_id, p.currency, p.period)).fetchone() is not None:
                return None
            c.execute("CREATE TEMP TABLE IF NOT EXISTS settle_open (access_id TEXT PRIMARY KEY)")
            c.execute("DELETE FROM settle_open")
            c.execute("INSERT INTO settle_open SELECT access_id FROM disputes WHERE provider_tenant_id = ? AND status = 'open'",
                      (p.provider_tenant_id,))
            scope = ("FROM ledger_entries e WHERE e.provider_tenant_id = ? AND e.currency = ? AND e.period <= ?"
                     " AND NOT EXISTS (SELECT 1 FROM payout_entries x WHERE x.ledger_entry_id = e.id)")
            args = (p.provider_tenant_id, p.currency, p.period)
            c.execute(f"INSERT INTO payout_entries (ledger_entry_id, payout_id) SELECT e.id, ? {scope}"
                      " AND e.access_id NOT IN (SELECT access_id FROM settle_open)", (payout_id, *args))
            failpoints.hit("settlement.in_transaction")  # crash tests: die with the release half-written
            sums = dict(c.execute("SELECT e.kind, sum(e.amount_micros) FROM ledger_entries e JOIN payout_entries x"
                                  " ON x.ledger_entry_id = e.id WHERE x.payout_id = ? GROUP BY 1", (payout_id,)).fetchall())
            (held,) = c.execute(f"SELECT coalesce(sum(e.amount_micros), 0) {scope} AND e.kind = 'charge'", args).fetchone()
            amounts = statement_amounts(sums, int(held))
            c.execute("UPDATE payouts SET released_at = ?, gross_micros = ?, fee_micros = ?, refunds_micros = ?, held_micros = ?,"
                      " earnings_micros = ? WHERE id = ?", (ts(now), *amounts, payout_id))
            released = _payout(c.execute("SELECT * FROM payouts WHERE id = ?", (payout_id,)).fetchone())
            emit(c, released.provider_tenant_id, "payout.released", ev.payout_data(released), now)
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
        stops = orjson.dumps(list(stop_words)).decode()

        def op(c: sqlite3.Connection) -> ProviderUsage:
            by_dataset = [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in c.execute(
                f"SELECT dataset_id, count(*), sum(rank), sum(rank <= 3) FROM impressions WHERE {cond} GROUP BY 1 ORDER BY 1", params)]
            (searches,) = c.execute(f"SELECT count(DISTINCT search_id) FROM impressions WHERE {cond}", params).fetchone()
            accesses, buyers = c.execute(f"SELECT count(*), count(DISTINCT buyer_tenant_id) FROM accesses WHERE {cond}",
                                         params).fetchone()
            keywords = [(r[0], int(r[1])) for r in c.execute(
                "SELECT k.value, count(DISTINCT s.seq) FROM searches s, json_each(s.keywords) k"
                f" WHERE s.id IN (SELECT search_id FROM impressions WHERE {cond})"
                " AND k.value NOT IN (SELECT value FROM json_each(?)) GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
                (*params, stops, top))]
            revenue = [(r[0], r[1], r[2], int(r[3])) for r in c.execute(
                f"SELECT dataset_id, substr(created_at, 1, 10), kind, sum(amount_micros) FROM ledger_entries WHERE {' AND '.join(lwhere)}"
                " GROUP BY 1, 2, 3", lparams)]
            return ProviderUsage(int(searches), int(accesses), int(buyers), by_dataset, keywords, revenue)

        return await self.read(op)

    async def money_totals(self) -> dict[str, int]:
        def op(c: sqlite3.Connection) -> dict[str, int]:
            out = {r[0]: int(r[1]) for r in c.execute("SELECT kind, sum(amount_micros) FROM ledger_entries GROUP BY 1")}
            out.update({f"released:{r[0]}": int(r[1]) for r in c.execute(
                "SELECT e.kind, sum(e.amount_micros) FROM ledger_entries e JOIN payout_entries p ON p.ledger_entry_id = e.id GROUP BY 1")})
            return out

        return await self.read(op)

