"""Webhooks on SQLite: endpoints, the outbox (:func:`emit`), deliveries and their attempts.

:func:`emit` runs inside the write transaction of the change an event reports: it writes
one delivery per enabled endpoint of the tenant that subscribes to the event's type, and
the event's bytes once, only when some endpoint wants it (a tenant without webhooks pays
one indexed lookup). Nothing is announced that was rolled back; nothing committed is lost.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from engine.ids import iso, new_ordered_id
from engine.store.sqlite.access import SqliteAccess
from engine.store.sqlite.sqltime import dt, ts
from engine.store.webhook_records import Attempt, AttemptOutcome, Delivery, DeliveryJob, Webhook, endpoint_steps, event_filter

QUICK_ATTEMPTS = 16  # attempts recorded inline on the Trio thread at most; a larger batch takes a worker thread


def event_body(event_type: str, data: Mapping[str, Any], now: datetime) -> bytes:
    """The delivered body (Standard Webhooks): ``{type, timestamp, data}``."""
    return orjson.dumps({"type": event_type, "timestamp": iso(now), "data": data})


def delivery_prefix(now: datetime) -> str:
    """The time part of a delivery id: milliseconds since 1970 as 12 hex digits (sorted as the instants)."""
    return f"{int(now.timestamp() * 1000):012x}"


_FANOUT = (
    "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, event_type, status, attempts, next_attempt_at, created_at)"
    " SELECT 'dlv_' || ? || lower(hex(randomblob(6))), w.id, w.tenant_id, ?, ?, 'pending', 0, ?, ? FROM webhooks w"
    " WHERE w.tenant_id = ? AND w.status = 'enabled' AND (instr(w.event_filter, ?) > 0 OR w.event_filter = ',*,')"
)


def emit(c: sqlite3.Connection, tenant_id: str, event_type: str, data: Mapping[str, Any], now: datetime) -> None:
    """Write ``event_type`` for ``tenant_id``'s subscribed endpoints, in ``c``'s transaction.

    The event's and its deliveries' ids start with the time (:func:`~engine.ids.new_ordered_id`;
    a delivery's: milliseconds as 12 hex digits, then 12 random ones): new rows
    go in at the end of the ``id`` indexes (and the attempts' primary key follows the
    delivery's), not on a random page of each, which under fan-out made every commit rewrite
    most of those indexes into the WAL."""
    event_id = new_ordered_id("evt", now)
    stamp = ts(now)
    fanned = c.execute(_FANOUT, (delivery_prefix(now), event_id, event_type, stamp, stamp, tenant_id,
                                 f",{event_type},")).rowcount
    if fanned:
        c.execute(
            "INSERT INTO webhook_events (id, tenant_id, type, body, created_at) VALUES (?, ?, ?, ?, ?)",
            (event_id, tenant_id, event_type, event_body(event_type, data, now), stamp),
        )


def _webhook(r: sqlite3.Row) -> Webhook:
    return Webhook(
        id=r["id"], tenant_id=r["tenant_id"], url=r["url"], events=tuple(orjson.loads(r["events"])),
        description=r["description"], status=r["status"], disabled_reason=r["disabled_reason"],
        secret_sealed=r["secret_sealed"], previous_secret_sealed=r["previous_secret_sealed"],
        previous_secret_expires_at=dt(r["previous_secret_expires_at"]), failing_since=dt(r["failing_since"]),
        created_at=dt(r["created_at"]), updated_at=dt(r["updated_at"]), seq=r["seq"],  # type: ignore[arg-type]
    )


def _delivery(r: sqlite3.Row) -> Delivery:
    return Delivery(
        id=r["id"], webhook_id=r["webhook_id"], tenant_id=r["tenant_id"], event_id=r["event_id"], event_type=r["event_type"],
        status=r["status"], attempts=r["attempts"], next_attempt_at=dt(r["next_attempt_at"]),
        last_attempt_at=dt(r["last_attempt_at"]), last_status_code=r["last_status_code"], last_error=r["last_error"],
        last_duration_ms=r["last_duration_ms"], created_at=dt(r["created_at"]), seq=r["seq"],  # type: ignore[arg-type]
    )


def _attempt(r: sqlite3.Row) -> Attempt:
    return Attempt(r["delivery_id"], r["attempt"], dt(r["started_at"]), r["status_code"], r["duration_ms"],  # type: ignore[arg-type]
                   r["error"], r["response_excerpt"])


_MUTABLE = {"url", "events", "description", "status", "disabled_reason", "secret_sealed", "previous_secret_sealed",
            "previous_secret_expires_at", "failing_since", "updated_at"}


def _value(column: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return ts(value)
    if column == "events":
        return orjson.dumps(list(value)).decode()
    return value


class WebhooksMixin(SqliteAccess):
    """Endpoints, deliveries and attempts; relies on ``read``/``write`` of the store."""

    # -- endpoints ------------------------------------------------------------------
    async def create_webhook(self, hook: Webhook) -> None:
        await self.write(
            lambda c: c.execute(
                "INSERT INTO webhooks (id, tenant_id, url, events, event_filter, description, status, secret_sealed,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (hook.id, hook.tenant_id, hook.url, _value("events", hook.events), event_filter(hook.events), hook.description,
                 hook.status, hook.secret_sealed, ts(hook.created_at), ts(hook.updated_at)),
            ), quick=True,
        )

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

        def op(c: sqlite3.Connection) -> sqlite3.Row | None:
            if sets:
                c.execute(f"UPDATE webhooks SET {', '.join(sets)} WHERE id = ? AND tenant_id = ?", (*values, webhook_id, tenant_id))
            return c.execute("SELECT * FROM webhooks WHERE id = ? AND tenant_id = ?", (webhook_id, tenant_id)).fetchone()

        row = await self.write(op, quick=True)
        return None if row is None else _webhook(row)

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        """Delete the endpoint with its deliveries and their attempts."""

        def op(c: sqlite3.Connection) -> bool:
            if not c.execute("DELETE FROM webhooks WHERE id = ? AND tenant_id = ?", (webhook_id, tenant_id)).rowcount:
                return False
            c.execute("DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE webhook_id = ?)",
                      (webhook_id,))
            c.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,))
            return True

        return await self.write(op)

    # -- the outbox ---------------------------------------------------------------------
    async def emit_event(self, tenant_id: str, event_type: str, data: Mapping[str, Any], now: datetime) -> None:
        """An event that reports no other write (tests, the benchmark)."""
        await self.write(emit, tenant_id, event_type, data, now, quick=True)

    async def emit_events(self, events: Sequence[tuple[str, str, Mapping[str, Any]]], now: datetime) -> None:
        """Many ``(tenant_id, event_type, data)`` that report no other write, in one transaction."""

        def op(c: sqlite3.Connection) -> None:
            for tenant_id, event_type, data in events:
                emit(c, tenant_id, event_type, data, now)

        await self.write(op)

    async def pending_deliveries(self) -> int:
        return await self.read(lambda c: c.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'").fetchone()[0])

    # -- the delivery log -------------------------------------------------------------------
    async def list_deliveries(self, tenant_id: str, webhook_id: str, after: int | None, limit: int) -> list[Delivery]:
        return await self.newest_page(_delivery, "webhook_deliveries", ["webhook_id = ?", "tenant_id = ?"], [webhook_id, tenant_id],
                                      after, limit)

    async def get_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str) -> Delivery | None:
        return await self.one(_delivery, "SELECT * FROM webhook_deliveries WHERE id = ? AND webhook_id = ? AND tenant_id = ?",
                              (delivery_id, webhook_id, tenant_id))

    async def delivery_attempts(self, delivery_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        if not delivery_ids:
            return {}
        ids = list(delivery_ids)
        rows = await self.read(lambda c: c.execute(
            f"SELECT * FROM webhook_attempts WHERE delivery_id IN ({', '.join('?' * len(ids))}) ORDER BY delivery_id, attempt", ids,
        ).fetchall())
        found: dict[str, list[Attempt]] = {i: [] for i in ids}
        for r in rows:
            found[r["delivery_id"]].append(_attempt(r))
        return found

    async def retry_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str, now: datetime) -> Delivery | None:
        """Make the delivery due now (again), whatever its state; None if there is no such delivery."""

        def op(c: sqlite3.Connection) -> sqlite3.Row | None:
            c.execute(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND webhook_id = ? AND tenant_id = ?",
                (ts(now), delivery_id, webhook_id, tenant_id),
            )
            return c.execute("SELECT * FROM webhook_deliveries WHERE id = ? AND webhook_id = ? AND tenant_id = ?",
                             (delivery_id, webhook_id, tenant_id)).fetchone()

        row = await self.write(op, quick=True)
        return None if row is None else _delivery(row)

    # -- the delivery worker --------------------------------------------------------------
    async def claim_deliveries(
        self, owner: str, now: datetime, lease_until: datetime, limit: int, per_webhook: int, busy: Sequence[str]
    ) -> list[DeliveryJob]:
        """Lease up to ``limit`` due deliveries of enabled endpoints, at most ``per_webhook``
        per endpoint and none of the ``busy`` ones, with the endpoint and the event's bytes."""
        skip = list(busy)
        not_busy = f"AND w.id NOT IN ({', '.join('?' * len(skip))})" if skip else ""

        def op(c: sqlite3.Connection) -> list[DeliveryJob]:
            stamp = ts(now)
            # Each enabled endpoint's first due deliveries, read from its end of the
            # (webhook_id, next_attempt_at, seq) index: the cost grows with the endpoints and
            # ``per_webhook``, not with the backlog (a window over every pending delivery did).
            # One statement each for the rows, the leases, the endpoints and the bodies (a join
            # of the bodies into the first one made SQLite pick a plan that scans the backlog).
            rows = c.execute(
                "SELECT d.* FROM webhooks w JOIN webhook_deliveries d ON d.id IN ("
                " SELECT d2.id FROM webhook_deliveries d2 WHERE d2.webhook_id = w.id AND d2.status = 'pending'"
                " AND d2.next_attempt_at <= ? AND (d2.lease_until IS NULL OR d2.lease_until < ?)"
                " ORDER BY d2.next_attempt_at, d2.seq LIMIT ?)"
                f" WHERE w.status = 'enabled' {not_busy} ORDER BY d.next_attempt_at, d.seq LIMIT ?",
                (stamp, stamp, per_webhook, *skip, limit),
            ).fetchall()
            if not rows:
                return []
            ids = [r["id"] for r in rows]
            c.execute(f"UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ? WHERE id IN ({', '.join('?' * len(ids))})",
                      (owner, ts(lease_until), *ids))
            hook_ids = list({r["webhook_id"] for r in rows})
            hooks = {r["id"]: _webhook(r) for r in c.execute(
                f"SELECT * FROM webhooks WHERE id IN ({', '.join('?' * len(hook_ids))})", hook_ids).fetchall()}
            event_ids = list({r["event_id"] for r in rows})
            bodies = dict(c.execute(f"SELECT id, body FROM webhook_events WHERE id IN ({', '.join('?' * len(event_ids))})",
                                    event_ids).fetchall())
            return [DeliveryJob(_delivery(r), hooks[r["webhook_id"]], bodies[r["event_id"]]) for r in rows]

        # Not waiting for the disk: a lease lost to a power loss only means the delivery is claimed again.
        return await self.write(op, quick=True, durable=False)

    async def next_delivery_due(self) -> datetime | None:
        """The earliest ``next_attempt_at`` of a pending delivery of an enabled endpoint."""
        value = await self.read(lambda c: c.execute(
            "SELECT min(d.next_attempt_at) FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
            " WHERE d.status = 'pending' AND w.status = 'enabled'").fetchone()[0], quick=True, single=True)
        return dt(value)

    async def purge_webhook_log(self, before: datetime) -> int:
        """Forget finished deliveries created before ``before``, their attempts, and events no
        delivery needs any more; return how many deliveries went."""

        def op(c: sqlite3.Connection) -> int:
            gone = [r[0] for r in c.execute(
                "SELECT id FROM webhook_deliveries WHERE status IN ('succeeded', 'failed') AND created_at < ? LIMIT 10000",
                (ts(before),)).fetchall()]
            if not gone:
                return 0
            marks = ", ".join("?" * len(gone))
            c.execute(f"DELETE FROM webhook_attempts WHERE delivery_id IN ({marks})", gone)
            c.execute(f"DELETE FROM webhook_deliveries WHERE id IN ({marks})", gone)
            c.execute("DELETE FROM webhook_events WHERE created_at < ? AND NOT EXISTS"
                      " (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)", (ts(before),))
            return len(gone)

        return await self.write(op)

    async def release_delivery_leases(self, now: datetime, is_dead: Callable[[str], bool]) -> int:
        """Forget the live leases of owners ``is_dead`` says are gone (their deliveries are
        claimable at once); another owner's lease stands until it expires. Returns how many."""
        owners = await self.read(lambda c: [r[0] for r in c.execute(
            "SELECT DISTINCT lease_owner FROM webhook_deliveries WHERE status = 'pending' AND lease_until >= ?",
            (ts(now),)).fetchall()])
        dead = [owner for owner in owners if is_dead(owner)]
        if not dead:
            return 0
        return await self.write(lambda c: c.execute(
            "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL"
            f" WHERE status = 'pending' AND lease_owner IN ({', '.join('?' * len(dead))})", dead).rowcount)

    async def record_attempts(self, owner: str, outcomes: Sequence[AttemptOutcome]) -> set[str]:
        """Log attempts (one transaction for all) of deliveries ``owner`` still holds the lease
        of; move each on; keep each endpoint's failure streak (and disable it). Returns the
        ids of the deliveries recorded: not the ones whose lease another owner took (or that
        were released, retried by hand or deleted meanwhile): that owner sends them again."""

        def op(c: sqlite3.Connection) -> set[str]:
            ids = [o.attempt.delivery_id for o in outcomes]
            held = {r[0]: (r[1], r[2]) for r in c.execute(
                f"SELECT id, webhook_id, attempts FROM webhook_deliveries WHERE id IN ({', '.join('?' * len(ids))})"
                " AND lease_owner = ?", (*ids, owner)).fetchall()}
            kept = [(o, *held[o.attempt.delivery_id]) for o in outcomes if o.attempt.delivery_id in held]
            if not kept:
                return set()
            _record(c, kept)
            return {o.attempt.delivery_id for o, _, _ in kept}

        # Not waiting for the disk (the commit survives a crash of the process; a power loss
        # could lose it, and the delivery is then sent again: at least once, same webhook-id).
        return await self.write(op, quick=len(outcomes) <= QUICK_ATTEMPTS, durable=False)


def _record(c: sqlite3.Connection, kept: Sequence[tuple[AttemptOutcome, str, int]]) -> None:
    """``kept``: each outcome with its delivery's endpoint and attempts so far."""
    attempts, moves = [], []
    for outcome, _, before in kept:
        a = outcome.attempt
        number = before + 1
        attempts.append((a.delivery_id, number, ts(a.started_at), a.status_code, a.duration_ms, a.error, a.response_excerpt))
        status = "succeeded" if outcome.succeeded else ("pending" if outcome.next_attempt_at is not None else "failed")
        moves.append((status, number, ts(outcome.next_attempt_at) if status == "pending" else None, ts(a.started_at),
                      a.status_code, a.error, a.duration_ms, a.delivery_id))
    c.executemany(
        "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, duration_ms, error, response_excerpt)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)", attempts)
    c.executemany(
        "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, lease_owner = NULL, lease_until = NULL,"
        " last_attempt_at = ?, last_status_code = ?, last_error = ?, last_duration_ms = ? WHERE id = ?", moves)
    for step in endpoint_steps(kept):
        hook_id = step.webhook_id
        if step.succeeded:
            c.execute("UPDATE webhooks SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL", (hook_id,))
            continue
        # Written only when it changes: an emit in another transaction reads this row.
        c.execute("UPDATE webhooks SET failing_since = ? WHERE id = ? AND failing_since IS NULL", (ts(step.failed_at), hook_id))
        if step.disable_reason is not None:
            c.execute("UPDATE webhooks SET status = 'disabled', disabled_reason = ?, updated_at = ? WHERE id = ? AND status = 'enabled'",
                      (step.disable_reason, ts(step.disabled_at), hook_id))
        c.execute(
            "UPDATE webhooks SET status = 'disabled', disabled_reason = 'failing', updated_at = ?"
            " WHERE id = ? AND status = 'enabled' AND failing_since <= ?",
            (ts(step.last_at), hook_id, ts(step.failing_before)),
        )
