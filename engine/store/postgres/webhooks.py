"""Webhooks on PostgreSQL: endpoints, the outbox (:func:`emit`), deliveries and their attempts.

As on SQLite (``engine/store/sqlite/webhooks.py``): :func:`emit` runs inside the write
transaction of the change an event reports and fans it out to the subscribed endpoints
in one statement. Several engine processes share the sending: a delivery is claimed with
``FOR UPDATE SKIP LOCKED`` and leased until ``lease_until``; a dead process's leases
expire and another takes the delivery over (at least once: the same ``webhook-id``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from engine.ids import new_ordered_id
from engine.store.postgres.access import PgAccess, PgConn, pg_text
from engine.store.sqlite.webhooks import delivery_prefix, event_body
from engine.store.webhook_records import Attempt, AttemptOutcome, Delivery, DeliveryJob, Webhook, endpoint_steps, event_filter

# One round trip: the deliveries, and the event's bytes only when some endpoint wants it.
_FANOUT = (
    "WITH d AS (INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, event_type, status, attempts,"
    " next_attempt_at, created_at)"
    " SELECT 'dlv_' || ?::text || substr(replace(gen_random_uuid()::text, '-', ''), 1, 12), w.id, w.tenant_id, ?::text, ?::text,"
    " 'pending', 0,"
    " ?::timestamptz, ?::timestamptz"
    " FROM webhooks w WHERE w.tenant_id = ? AND w.status = 'enabled' AND (strpos(w.event_filter, ?::text) > 0 OR w.event_filter = ',*,')"
    " RETURNING 1)"
    " INSERT INTO webhook_events (id, tenant_id, type, body, created_at) SELECT ?::text, ?::text, ?::text, ?::bytea, ?::timestamptz WHERE EXISTS (SELECT 1 FROM d)"
)


async def emit(c: PgConn, tenant_id: str, event_type: str, data: Mapping[str, Any], now: datetime) -> None:
    """Write ``event_type`` for ``tenant_id``'s subscribed endpoints, in ``c``'s transaction."""
    event_id = new_ordered_id("evt", now)  # ids that start with the time: new rows go in at the end of the indexes
    await c.execute(_FANOUT, delivery_prefix(now), event_id, event_type, now, now, tenant_id, f",{event_type},",
                    event_id, tenant_id, event_type, event_body(event_type, data, now), now)


# :data:`_FANOUT` for many events of one tenant (a batch), still one round trip.
_FANOUT_MANY = (
    "WITH e AS (SELECT * FROM unnest(?::text[], ?::text[], ?::bytea[]) AS e(id, type, body)),"
    " d AS (INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, event_type, status, attempts,"
    " next_attempt_at, created_at)"
    " SELECT 'dlv_' || ?::text || substr(replace(gen_random_uuid()::text, '-', ''), 1, 12), w.id, w.tenant_id, e.id, e.type,"
    " 'pending', 0,"
    " ?::timestamptz, ?::timestamptz"
    " FROM e JOIN webhooks w ON w.tenant_id = ?::text AND w.status = 'enabled'"
    " AND (strpos(w.event_filter, ',' || e.type || ',') > 0 OR w.event_filter = ',*,')"
    " RETURNING event_id)"
    " INSERT INTO webhook_events (id, tenant_id, type, body, created_at)"
    " SELECT e.id, ?::text, e.type, e.body, ?::timestamptz FROM e WHERE e.id IN (SELECT event_id FROM d)"
)


async def emit_many(c: PgConn, tenant_id: str, events: Sequence[tuple[str, Mapping[str, Any]]], now: datetime) -> None:
    """:func:`emit` for each ``(event_type, data)`` of ``tenant_id``, in one statement, in order."""
    if not events:
        return
    ids = [new_ordered_id("evt", now) for _ in events]
    await c.execute(_FANOUT_MANY, ids, [t for t, _ in events], [event_body(t, data, now) for t, data in events],
                    delivery_prefix(now), now, now, tenant_id, tenant_id, now)


def _webhook(r: asyncpg.Record) -> Webhook:
    return Webhook(
        id=r["id"], tenant_id=r["tenant_id"], url=r["url"], events=tuple(orjson.loads(r["events"])),
        description=r["description"], status=r["status"], disabled_reason=r["disabled_reason"],
        secret_sealed=bytes(r["secret_sealed"]),
        previous_secret_sealed=None if r["previous_secret_sealed"] is None else bytes(r["previous_secret_sealed"]),
        previous_secret_expires_at=r["previous_secret_expires_at"], failing_since=r["failing_since"],
        created_at=r["created_at"], updated_at=r["updated_at"], seq=r["seq"],
    )


def _delivery(r: asyncpg.Record) -> Delivery:
    return Delivery(
        id=r["id"], webhook_id=r["webhook_id"], tenant_id=r["tenant_id"], event_id=r["event_id"], event_type=r["event_type"],
        status=r["status"], attempts=r["attempts"], next_attempt_at=r["next_attempt_at"], last_attempt_at=r["last_attempt_at"],
        last_status_code=r["last_status_code"], last_error=r["last_error"], last_duration_ms=r["last_duration_ms"],
        created_at=r["created_at"], seq=r["seq"],
    )


def _attempt(r: asyncpg.Record) -> Attempt:
    return Attempt(r["delivery_id"], r["attempt"], r["started_at"], r["status_code"], r["duration_ms"], r["error"],
                   r["response_excerpt"])


_MUTABLE = {"url", "events", "description", "status", "disabled_reason", "secret_sealed", "previous_secret_sealed",
            "previous_secret_expires_at", "failing_since", "updated_at"}


def _value(column: str, value: Any) -> Any:
    return orjson.dumps(list(value)).decode() if column == "events" else value


class WebhooksMixin(PgAccess):
    """Endpoints, deliveries and attempts; relies on ``read``/``write`` of the store."""

    # -- endpoints ------------------------------------------------------------------
    async def create_webhook(self, hook: Webhook) -> None:
        async def op(c: PgConn) -> None:
            await c.execute(
                "INSERT INTO webhooks (id, tenant_id, url, events, event_filter, description, status, secret_sealed,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                hook.id, hook.tenant_id, hook.url, _value("events", hook.events), event_filter(hook.events), hook.description,
                hook.status, hook.secret_sealed, hook.created_at, hook.updated_at,
            )

        await self.write(op)

    async def get_webhook(self, tenant_id: str, webhook_id: str) -> Webhook | None:
        return await self.one(_webhook, "SELECT * FROM webhooks WHERE id = ? AND tenant_id = ?", (webhook_id, tenant_id))

    async def list_webhooks(self, tenant_id: str, after: int | None, limit: int) -> list[Webhook]:
        return await self.newest_page(_webhook, "webhooks", ["tenant_id = ?"], [tenant_id], after, limit)

    async def update_webhook(self, tenant_id: str, webhook_id: str, changes: Mapping[str, Any]) -> Webhook | None:
        assert set(changes) <= _MUTABLE, changes
        sets = [f"{column} = ?" for column in changes]
        values = [_value(column, value) for column, value in changes.items()]
        if "events" in changes:
            sets.append("event_filter = ?")
            values.append(event_filter(changes["events"]))

        async def op(c: PgConn) -> asyncpg.Record | None:
            if sets:
                await c.execute(f"UPDATE webhooks SET {', '.join(sets)} WHERE id = ? AND tenant_id = ?", *values, webhook_id, tenant_id)
            return await c.fetchrow("SELECT * FROM webhooks WHERE id = ? AND tenant_id = ?", webhook_id, tenant_id)

        row = await self.write(op)
        return None if row is None else _webhook(row)

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        async def op(c: PgConn) -> bool:
            if not await c.execute("DELETE FROM webhooks WHERE id = ? AND tenant_id = ?", webhook_id, tenant_id):
                return False
            await c.execute("DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE webhook_id = ?)",
                            webhook_id)
            await c.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", webhook_id)
            return True

        return await self.write(op)

    # -- the outbox ---------------------------------------------------------------------
    async def emit_event(self, tenant_id: str, event_type: str, data: Mapping[str, Any], now: datetime) -> None:
        await self.write(emit, tenant_id, event_type, data, now)

    async def emit_events(self, events: Sequence[tuple[str, str, Mapping[str, Any]]], now: datetime) -> None:
        """Many ``(tenant_id, event_type, data)`` that report no other write, in one transaction."""
        by_tenant: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for tenant_id, event_type, data in events:
            by_tenant.setdefault(tenant_id, []).append((event_type, data))

        async def op(c: PgConn) -> None:
            for tenant_id, mine in by_tenant.items():
                await emit_many(c, tenant_id, mine, now)

        await self.write(op)

    async def pending_deliveries(self) -> int:
        async def op(c: PgConn) -> int:
            return int(await c.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"))

        return await self.read(op)

    # -- the delivery log -------------------------------------------------------------------
    async def list_deliveries(self, tenant_id: str, webhook_id: str, after: int | None, limit: int) -> list[Delivery]:
        return await self.newest_page(_delivery, "webhook_deliveries", ["webhook_id = ?", "tenant_id = ?"], [webhook_id, tenant_id],
                                      after, limit)

    async def get_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str) -> Delivery | None:
        return await self.one(_delivery, "SELECT * FROM webhook_deliveries WHERE id = ? AND webhook_id = ? AND tenant_id = ?",
                              (delivery_id, webhook_id, tenant_id))

    async def delivery_attempts(self, delivery_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        ids = list(delivery_ids)
        if not ids:
            return {}

        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch("SELECT * FROM webhook_attempts WHERE delivery_id = ANY(?) ORDER BY delivery_id, attempt", ids)

        found: dict[str, list[Attempt]] = {i: [] for i in ids}
        for r in await self.read(op):
            found[r["delivery_id"]].append(_attempt(r))
        return found

    async def retry_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str, now: datetime) -> Delivery | None:
        async def op(c: PgConn) -> asyncpg.Record | None:
            return await c.fetchrow(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND webhook_id = ? AND tenant_id = ? RETURNING *",
                now, delivery_id, webhook_id, tenant_id,
            )

        row = await self.write(op)
        return None if row is None else _delivery(row)

    # -- the delivery worker --------------------------------------------------------------
    async def claim_deliveries(
        self, owner: str, now: datetime, lease_until: datetime, limit: int, per_webhook: int, busy: Sequence[str]
    ) -> list[DeliveryJob]:
        skip = list(busy)

        async def op(c: PgConn) -> list[DeliveryJob]:
            # Each enabled endpoint's first due deliveries not locked by another process, read
            # from its end of the (webhook_id, next_attempt_at, seq) index (migration 0110): the
            # cost grows with the endpoints and ``per_webhook``, not with the backlog.
            rows = await c.fetch(
                "SELECT d.* FROM webhooks w CROSS JOIN LATERAL ("
                " SELECT d2.* FROM webhook_deliveries d2 WHERE d2.webhook_id = w.id AND d2.status = 'pending'"
                " AND d2.next_attempt_at <= ? AND (d2.lease_until IS NULL OR d2.lease_until < ?)"
                " ORDER BY d2.next_attempt_at, d2.seq LIMIT ? FOR UPDATE SKIP LOCKED) d"
                " WHERE w.status = 'enabled' AND NOT (w.id = ANY(?::text[])) ORDER BY d.next_attempt_at, d.seq LIMIT ?",
                now, now, per_webhook, skip, limit,
            )
            if not rows:
                return []
            ids = [r["id"] for r in rows]
            await c.execute("UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ? WHERE id = ANY(?)", owner, lease_until, ids)
            hooks = {r["id"]: _webhook(r) for r in await c.fetch(
                "SELECT * FROM webhooks WHERE id = ANY(?)", list({r["webhook_id"] for r in rows}))}
            bodies = {r["id"]: bytes(r["body"]) for r in await c.fetch(
                "SELECT id, body FROM webhook_events WHERE id = ANY(?)", list({r["event_id"] for r in rows}))}
            return [DeliveryJob(_delivery(r), hooks[r["webhook_id"]], bodies[r["event_id"]]) for r in rows]

        return await self.write(op)

    async def next_delivery_due(self) -> datetime | None:
        async def op(c: PgConn) -> datetime | None:
            value: datetime | None = await c.fetchval(
                "SELECT min(d.next_attempt_at) FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
                " WHERE d.status = 'pending' AND w.status = 'enabled'")
            return value

        return await self.read(op)

    async def purge_webhook_log(self, before: datetime) -> int:
        async def op(c: PgConn) -> int:
            gone = [r[0] for r in await c.fetch(
                "SELECT id FROM webhook_deliveries WHERE status IN ('succeeded', 'failed') AND created_at < ? LIMIT 10000", before)]
            if not gone:
                return 0
            await c.execute("DELETE FROM webhook_attempts WHERE delivery_id = ANY(?)", gone)
            await c.execute("DELETE FROM webhook_deliveries WHERE id = ANY(?)", gone)
            await c.execute("DELETE FROM webhook_events e WHERE e.created_at < ? AND NOT EXISTS"
                            " (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)", before)
            return len(gone)

        return await self.write(op)

    async def release_delivery_leases(self, now: datetime, is_dead: Callable[[str], bool]) -> int:
        """Forget the live leases of owners ``is_dead`` says are gone (a process of this
        machine that died); other processes' leases stand until they expire."""

        async def owners(c: PgConn) -> list[str]:
            return [r[0] for r in await c.fetch(
                "SELECT DISTINCT lease_owner FROM webhook_deliveries WHERE status = 'pending' AND lease_until >= ?", now)]

        dead = [owner for owner in await self.read(owners) if is_dead(owner)]
        if not dead:
            return 0

        async def op(c: PgConn) -> int:
            return await c.execute("UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL"
                                   " WHERE status = 'pending' AND lease_owner = ANY(?::text[])", dead)

        return await self.write(op)

    async def record_attempts(self, owner: str, outcomes: Sequence[AttemptOutcome]) -> set[str]:
        """Log attempts (one transaction for all) of deliveries ``owner`` still holds the lease
        of; move each on; keep each endpoint's failure streak (and disable it). Returns the
        ids of the deliveries recorded: not the ones whose lease another owner took (or that
        were released, retried by hand or deleted meanwhile): that owner sends them again."""

        async def op(c: PgConn) -> set[str]:
            ids = sorted({o.attempt.delivery_id for o in outcomes})  # one lock order
            held = {r["id"]: (r["webhook_id"], r["attempts"]) for r in await c.fetch(
                "SELECT id, webhook_id, attempts FROM webhook_deliveries WHERE id = ANY(?) AND lease_owner = ?"
                " ORDER BY id FOR UPDATE", ids, owner)}
            kept = [(o, *held[o.attempt.delivery_id]) for o in outcomes if o.attempt.delivery_id in held]
            if not kept:
                return set()
            await _record(c, kept)
            return {o.attempt.delivery_id for o, _, _ in kept}

        return await self.write(op)


async def _record(c: PgConn, kept: Sequence[tuple[AttemptOutcome, str, int]]) -> None:
    """``kept``: each outcome with its delivery's endpoint and attempts so far."""
    attempts, moves = [], []
    for outcome, _, before in kept:
        a = outcome.attempt
        number = before + 1
        # The receiver's answer (and errors quoting it) may hold NUL, which PostgreSQL text cannot.
        error, excerpt = pg_text(a.error), pg_text(a.response_excerpt)
        attempts.append((a.delivery_id, number, a.started_at, a.status_code, a.duration_ms, error, excerpt))
        status = "succeeded" if outcome.succeeded else ("pending" if outcome.next_attempt_at is not None else "failed")
        moves.append((status, number, outcome.next_attempt_at if status == "pending" else None, a.started_at,
                      a.status_code, error, a.duration_ms, a.delivery_id))
    await c.executemany(
        "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, duration_ms, error, response_excerpt)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", attempts)
    await c.executemany(
        "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, lease_owner = NULL, lease_until = NULL,"
        " last_attempt_at = ?, last_status_code = ?, last_error = ?, last_duration_ms = ? WHERE id = ?", moves)
    for step in endpoint_steps(kept):
        hook_id = step.webhook_id
        if step.succeeded:
            await c.execute("UPDATE webhooks SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL", hook_id)
            continue
        # Written only when it changes: every emit of the tenant reads this row (SERIALIZABLE).
        await c.execute("UPDATE webhooks SET failing_since = ? WHERE id = ? AND failing_since IS NULL", step.failed_at, hook_id)
        if step.disable_reason is not None:
            await c.execute(
                "UPDATE webhooks SET status = 'disabled', disabled_reason = ?, updated_at = ? WHERE id = ? AND status = 'enabled'",
                step.disable_reason, step.disabled_at, hook_id)
        await c.execute(
            "UPDATE webhooks SET status = 'disabled', disabled_reason = 'failing', updated_at = ?"
            " WHERE id = ? AND status = 'enabled' AND failing_since <= ?",
            step.last_at, hook_id, step.failing_before,
        )
