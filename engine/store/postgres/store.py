"""PostgreSQL implementation of :class:`engine.store.base.Store` (production).

asyncpg through trio-asyncio: every operation is one asyncio coroutine run in one
transaction (see :mod:`engine.store.postgres.access` for isolation, retries, cancellation and
error translation). Several engine processes may share the database: migrations run under
an advisory lock, so only one process applies them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg
import orjson
import trio
import trio_asyncio

from engine.store import webhook_events as ev
from engine.store.postgres.access import PgAccess, PgConn, translate
from engine.store.postgres.bulk import BulkMixin
from engine.store.postgres.gauges import GaugesMixin
from engine.store.postgres.imports import ImportsMixin
from engine.store.postgres.market import MarketMixin
from engine.store.postgres.money import MoneyMixin
from engine.store.postgres.objects import ObjectsMixin
from engine.store.postgres.pipeline import PipelineMixin, _job
from engine.store.postgres.review_queue import ReviewQueueMixin
from engine.store.postgres.search import SearchMixin, upgrade_legacy_index
from engine.store.postgres.webhooks import WebhooksMixin, emit
from engine.store.records import (
    DATASET_COLUMNS,
    DATASET_MUTABLE,
    IN_CATALOG,
    ApiKey,
    CatalogEntry,
    Dataset,
    IdempotencyRecord,
    Job,
    Membership,
    Session,
    Tenant,
    User,
)

# Any constant: the key of the advisory lock held while migrating.
_MIGRATION_LOCK = 0x1970_0001


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("engine.store.postgres") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.name, entry.read_text("utf-8")))
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the numbered migrations not yet applied, each atomically; return those applied.

    Runs on the asyncio side. Safe when several processes start at once: the whole run holds
    an advisory lock, taken before any transaction begins (so each transaction sees what an
    earlier holder created), and re-checks what is applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = []
        for number, name, sql in _migrations():
            async with conn.transaction():
                if await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", number):
                    continue
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", number, name)
            applied.append(number)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


# -- row mappers ----------------------------------------------------------------------

def _user(r: asyncpg.Record) -> User:
    return User(r["id"], r["email"], r["name"], r["password_hash"], r["is_platform_admin"], r["created_at"])


def _tenant(r: asyncpg.Record) -> Tenant:
    return Tenant(r["id"], r["name"], r["created_at"])


def _membership(r: asyncpg.Record) -> Membership:
    return Membership(r["tenant_id"], r["user_id"], r["role"], r["created_at"])


def _session(r: asyncpg.Record) -> Session:
    return Session(r["token_hash"], r["user_id"], r["tenant_id"], r["created_at"], r["expires_at"], r["revoked_at"])


def _api_key(r: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=r["id"], tenant_id=r["tenant_id"], user_id=r["user_id"], name=r["name"], prefix=r["prefix"],
        secret_hash=r["secret_hash"], scopes=tuple(orjson.loads(r["scopes"])),
        dataset_access_mode=r["dataset_access_mode"], dataset_ids=tuple(orjson.loads(r["dataset_ids"])),
        created_at=r["created_at"], last_used_at=r["last_used_at"], revoked_at=r["revoked_at"], seq=r["seq"],
    )




def _dataset(r: asyncpg.Record) -> Dataset:
    schema = r["record_schema"]
    return Dataset(
        id=r["id"], tenant_id=r["tenant_id"], name=r["name"], description=r["description"],
        source_modality=r["source_modality"], monetization_mode=r["monetization_mode"],
        pricing_model=r["pricing_model"], visibility=r["visibility"], status=r["status"],
        created_at=r["created_at"], updated_at=r["updated_at"],
        object_count=r["object_count"], active_object_count=r["active_object_count"],
        total_bytes=r["total_bytes"], total_datapoint_count=r["total_datapoint_count"],
        last_ingest_at=r["last_ingest_at"],
        record_schema=None if schema is None else orjson.loads(schema), seq=r["seq"],
        price_micros=r["price_micros"], currency=r["currency"],
    )


def _dataset_value(column: str, value: Any) -> Any:
    if column == "record_schema" and value is not None:
        return orjson.dumps(value).decode()
    return value


def _idem(r: asyncpg.Record) -> IdempotencyRecord:
    return IdempotencyRecord(
        r["principal"], r["key"], r["fingerprint"], r["state"], r["status_code"], r["response"],
        r["created_at"], r["locked_at"], r["expires_at"],
    )


def _page_clause(after: int | None) -> tuple[str, list[Any]]:
    return ("AND seq < ?", [after]) if after is not None else ("", [])


LEASE_CHANNEL = "ipto_leases"


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing to undo (see :mod:`engine.store.postgres.access`)."""


class PgStore(ObjectsMixin, ReviewQueueMixin, PipelineMixin, SearchMixin, MarketMixin, MoneyMixin, ImportsMixin, BulkMixin, WebhooksMixin, GaugesMixin, PgAccess):
    """The production store. Open it with :meth:`open` inside ``trio_asyncio.open_loop()``."""

    # Several engine processes may share this store: leases decide who does what.
    shared = True

    def __init__(self, pool: asyncpg.Pool, loop: Any) -> None:
        self._pool = pool
        self._loop = loop

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, dsn: str, pool_size: int = 10, command_timeout: float = 60.0) -> AsyncIterator[PgStore]:
        """Connect a pool to ``dsn`` and migrate the database."""

        async def setup() -> asyncpg.Pool:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=pool_size, command_timeout=command_timeout, reset=_keep_session,
                server_settings={"application_name": "ipto-engine", "timezone": "UTC"},
            )
            try:
                async with pool.acquire() as conn:
                    await migrate(conn)
                    await upgrade_legacy_index(conn)
            except BaseException:
                await pool.close()
                raise
            return pool

        with translate():
            pool = await trio_asyncio.aio_as_trio(setup)()
        loop = trio_asyncio.current_loop.get()
        try:
            yield cls(pool, loop)
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(10) as waited:
                    await trio_asyncio.aio_as_trio(pool.close, loop=loop)()
                if waited.cancelled_caught:
                    pool.terminate()

    async def flush(self) -> None:
        """Nothing to wait for: every commit waits for PostgreSQL's WAL flush (but import
        batches, which are redone from their file after a crash)."""

    async def ping(self) -> None:
        async def op(c: PgConn) -> None:
            await c.fetchval("SELECT 1")

        await self.read(op)

    async def shared_secret(self, candidate: bytes) -> bytes:
        """The secret every process on this database uses: the first ``candidate`` stored wins."""

        async def op(c: PgConn) -> bytes:
            await c.execute("INSERT INTO server_secret (id, secret) VALUES (1, ?) ON CONFLICT (id) DO NOTHING", candidate)
            secret: bytes = await c.fetchval("SELECT secret FROM server_secret WHERE id = 1")
            return secret

        return await self.write(op)

    # -- leases and notifications (several processes) ------------------------------------
    async def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take ``name`` for ``owner`` unless another owner holds it unexpired (renews one's own)."""

        async def op(c: PgConn) -> bool:
            got = await c.fetchval(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, now() + make_interval(secs => ?))"
                " ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at,"
                " acquired_at = CASE WHEN leases.owner = EXCLUDED.owner THEN leases.acquired_at ELSE now() END"
                " WHERE leases.owner = EXCLUDED.owner OR leases.expires_at < now() RETURNING owner",
                name, owner, ttl_seconds,
            )
            return got is not None

        return await self.write(op)

    async def renew_leases(self, owner: str, names: Iterable[str], ttl_seconds: float) -> set[str]:
        """Extend ``owner``'s leases among ``names``; return those still held. A lease that
        expired but that nobody took over is still ours: no one else acted under it."""
        wanted = list(names)

        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch(
                "UPDATE leases SET expires_at = now() + make_interval(secs => ?)"
                " WHERE owner = ? AND name = ANY(?::text[]) RETURNING name",
                ttl_seconds, owner, wanted,
            )

        return {r["name"] for r in await self.write(op)} if wanted else set()

    async def claim_unheld_jobs(self, job_type: str, owner: str, ttl_seconds: float, limit: int = 100) -> list[Job]:
        """Unfinished jobs whose ``job:<id>`` lease nobody holds, now leased to ``owner``.

        Several processes scan at once: ``FOR UPDATE SKIP LOCKED`` hands each job row to one
        scanner, in creation order, without waiting on the others."""

        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch(
                "WITH free AS (SELECT j.* FROM jobs j WHERE j.type = ? AND j.status IN ('queued', 'running')"
                "   AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.name = 'job:' || j.id AND l.expires_at >= now())"
                "   ORDER BY j.seq LIMIT ? FOR UPDATE OF j SKIP LOCKED),"
                " taken AS (INSERT INTO leases (name, owner, expires_at)"
                "   SELECT 'job:' || id, ?, now() + make_interval(secs => ?) FROM free"
                "   ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at,"
                "   acquired_at = now() WHERE leases.expires_at < now() RETURNING name)"
                " SELECT free.* FROM free JOIN taken ON taken.name = 'job:' || free.id ORDER BY free.seq",
                job_type, limit, owner, ttl_seconds,
            )

        return [_job(r) for r in await self.write(op)]

    async def claim_unheld_import_runs(self, owner: str, ttl_seconds: float) -> list[str]:
        """Datasets with queued or processing imports whose ``imports:<id>`` lease nobody
        holds, now leased to ``owner`` (``FOR UPDATE SKIP LOCKED``, as for jobs)."""

        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch(
                "WITH free AS (SELECT i.dataset_id FROM imports i WHERE i.status IN ('queued', 'processing')"
                "   AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.name = 'imports:' || i.dataset_id AND l.expires_at >= now())"
                "   ORDER BY i.arrival FOR UPDATE OF i SKIP LOCKED)"
                " INSERT INTO leases (name, owner, expires_at)"
                " SELECT DISTINCT 'imports:' || dataset_id, ?, now() + make_interval(secs => ?) FROM free"
                " ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at,"
                " acquired_at = now() WHERE leases.expires_at < now() RETURNING name",
                owner, ttl_seconds,
            )

        return [r["name"].removeprefix("imports:") for r in await self.write(op)]

    async def release_lease(self, name: str, owner: str, to: str | None = None, ttl_seconds: float = 5.0) -> None:
        """Give ``name`` up (to the owner ``to``, for ``ttl_seconds`` unless it renews, if
        given) and tell every process (those waiting for it retry at once)."""

        async def op(c: PgConn) -> None:
            if to is None:
                changed = await c.execute("DELETE FROM leases WHERE name = ? AND owner = ?", name, owner)
            else:
                changed = await c.execute(
                    "UPDATE leases SET owner = ?, expires_at = now() + make_interval(secs => ?), acquired_at = now()"
                    " WHERE name = ? AND owner = ?",
                    to, ttl_seconds, name, owner,
                )
            if changed:
                await c.execute("SELECT pg_notify(?, ?)", LEASE_CHANNEL, f"released {name}")

        await self.write(op)

    async def notify(self, payload: str) -> None:
        """Send ``payload`` to every process listening (delivered when this commits)."""

        async def op(c: PgConn) -> None:
            await c.execute("SELECT pg_notify(?, ?)", LEASE_CHANNEL, payload)

        await self.write(op)

    @contextlib.asynccontextmanager
    async def notifications(self) -> AsyncIterator[trio.MemoryReceiveChannel[str]]:
        """The payloads :meth:`notify` and :meth:`release_lease` send, from every process,
        on a dedicated connection (LISTEN/NOTIFY) for the duration of the block."""
        send, receive = trio.open_memory_channel[str](1024)

        def deliver(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            # asyncio side, same thread: a lost wake-up only delays work until the next scan.
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                send.send_nowait(payload)

        async def connect() -> asyncpg.Connection:
            conn = await self._pool.acquire()
            await conn.add_listener(LEASE_CHANNEL, deliver)
            return conn

        with translate():
            conn = await trio_asyncio.aio_as_trio(connect, loop=self._loop)()
        try:
            async with receive:
                yield receive
        finally:
            send.close()

            async def disconnect() -> None:
                try:
                    await conn.remove_listener(LEASE_CHANNEL, deliver)
                finally:
                    await self._pool.release(conn)

            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await trio_asyncio.aio_as_trio(disconnect, loop=self._loop)()

    # -- identity -----------------------------------------------------------------
    async def create_account(self, tenant: Tenant, user: User, membership: Membership) -> None:
        async def op(c: PgConn) -> None:
            await c.execute("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)", tenant.id, tenant.name, tenant.created_at)
            await c.execute(
                "INSERT INTO users (id, email, name, password_hash, is_platform_admin, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                user.id, user.email, user.name, user.password_hash, user.is_platform_admin, user.created_at,
            )
            await c.execute(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES (?, ?, ?, ?)",
                membership.tenant_id, membership.user_id, membership.role, membership.created_at,
            )

        await self.write(op)

    async def _exec(self, sql: str, *args: Any) -> int:
        """One statement in its own write transaction; the rows it affected."""

        async def op(c: PgConn) -> int:
            return await c.execute(sql, *args)

        return await self.write(op)

    async def get_user(self, user_id: str) -> User | None:
        return await self.one(_user, "SELECT * FROM users WHERE id = ?", (user_id,))

    async def get_user_by_email(self, email: str) -> User | None:
        return await self.one(_user, "SELECT * FROM users WHERE email = ?", (email,))

    async def set_platform_admin(self, user_id: str, is_admin: bool) -> None:
        await self._exec("UPDATE users SET is_platform_admin = ? WHERE id = ?", is_admin, user_id)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        return await self.one(_tenant, "SELECT * FROM tenants WHERE id = ?", (tenant_id,))

    async def get_membership(self, tenant_id: str, user_id: str) -> Membership | None:
        return await self.one(_membership, "SELECT * FROM memberships WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id))

    async def first_membership(self, user_id: str) -> Membership | None:
        return await self.one(_membership, "SELECT * FROM memberships WHERE user_id = ? ORDER BY created_at LIMIT 1", (user_id,))

    async def create_session(self, session: Session) -> None:
        await self._exec(
            "INSERT INTO sessions (token_hash, user_id, tenant_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            session.token_hash, session.user_id, session.tenant_id, session.created_at, session.expires_at,
        )

    async def get_session(self, token_hash: str) -> Session | None:
        return await self.one(_session, "SELECT * FROM sessions WHERE token_hash = ?", (token_hash,))

    async def session_principal(self, token_hash: str) -> tuple[Session, bool, str] | None:
        """A session with its user's admin flag and membership role, in one read (every request needs them)."""
        return await self.one(
            lambda r: (_session(r), r["is_platform_admin"], r["role"]),
            "SELECT s.*, u.is_platform_admin, m.role FROM sessions s JOIN users u ON u.id = s.user_id"
            " JOIN memberships m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id WHERE s.token_hash = ?",
            (token_hash,),
        )

    async def revoke_session(self, token_hash: str, at: datetime) -> None:
        await self._exec("UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL", at, token_hash)

    async def purge_sessions(self, before: datetime) -> int:
        return await self._exec("DELETE FROM sessions WHERE expires_at < ?", before)

    # -- API keys -------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey) -> None:
        await self._exec(
            "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, secret_hash, scopes, dataset_access_mode,"
            " dataset_ids, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            key.id, key.tenant_id, key.user_id, key.name, key.prefix, key.secret_hash,
            orjson.dumps(list(key.scopes)).decode(), key.dataset_access_mode,
            orjson.dumps(list(key.dataset_ids)).decode(), key.created_at,
        )

    async def get_api_key_by_prefix(self, prefix: str) -> ApiKey | None:
        return await self.one(_api_key, "SELECT * FROM api_keys WHERE prefix = ?", (prefix,))

    async def get_api_key(self, tenant_id: str, key_id: str) -> ApiKey | None:
        return await self.one(_api_key, "SELECT * FROM api_keys WHERE id = ? AND tenant_id = ?", (key_id, tenant_id))

    async def list_api_keys(self, tenant_id: str, after: int | None, limit: int) -> list[ApiKey]:
        return await self.newest_page(_api_key, "api_keys", ["tenant_id = ?"], [tenant_id], after, limit)

    async def update_api_key(self, tenant_id: str, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        allowed = {"name", "dataset_access_mode", "dataset_ids", "revoked_at"}
        assert set(changes) <= allowed, changes
        sets, values = [], []
        for column, value in changes.items():
            if column == "dataset_ids":
                value = orjson.dumps(list(value)).decode()
            sets.append(f"{column} = ?")
            values.append(value)

        async def op(c: PgConn) -> asyncpg.Record | None:
            if sets:
                await c.execute(f"UPDATE api_keys SET {', '.join(sets)} WHERE id = ? AND tenant_id = ?", *values, key_id, tenant_id)
            return await c.fetchrow("SELECT * FROM api_keys WHERE id = ? AND tenant_id = ?", key_id, tenant_id)

        row = await self.write(op)
        return None if row is None else _api_key(row)

    async def touch_api_key(self, key_id: str, at: datetime, stale_before: datetime) -> None:
        await self._exec(
            "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
            at, key_id, stale_before,
        )

    # -- datasets -------------------------------------------------------------------
    async def create_dataset(self, dataset: Dataset) -> None:
        columns = DATASET_COLUMNS
        await self._exec(
            f"INSERT INTO datasets ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            *(_dataset_value(col, getattr(dataset, col)) for col in columns),
        )

    async def get_dataset(self, tenant_id: str, dataset_id: str) -> Dataset | None:
        return await self.one(
            _dataset, "SELECT * FROM datasets WHERE id = ? AND tenant_id = ? AND status != 'deleted'", (dataset_id, tenant_id)
        )

    async def get_dataset_any(self, dataset_id: str) -> Dataset | None:
        return await self.one(_dataset, "SELECT * FROM datasets WHERE id = ? AND status != 'deleted'", (dataset_id,))

    async def list_datasets(
        self,
        tenant_id: str,
        *,
        status: str | None,
        visibility: str | None,
        only_ids: Iterable[str] | None,
        after: int | None,
        limit: int,
    ) -> tuple[list[Dataset], int]:
        where = ["tenant_id = ?", "status != 'deleted'"]
        params: list[Any] = [tenant_id]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if visibility is not None:
            where.append("visibility = ?")
            params.append(visibility)
        if only_ids is not None:
            where.append("id = ANY(?::text[])")
            params.append(list(only_ids))
        clause, page_params = _page_clause(after)
        condition = " AND ".join(where)

        async def op(c: PgConn) -> tuple[list[asyncpg.Record], int]:
            rows = await c.fetch(
                f"SELECT * FROM datasets WHERE {condition} {clause} ORDER BY seq DESC LIMIT ?", *params, *page_params, limit
            )
            return rows, await c.fetchval(f"SELECT count(*) FROM datasets WHERE {condition}", *params)

        rows, total = await self.read(op)
        return [_dataset(r) for r in rows], total

    async def existing_dataset_ids(self, tenant_id: str, ids: Iterable[str]) -> set[str]:
        wanted = list(ids)
        if not wanted:
            return set()

        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch(
                "SELECT id FROM datasets WHERE tenant_id = ? AND status != 'deleted' AND id = ANY(?::text[])", tenant_id, wanted
            )

        return {r[0] for r in await self.read(op)}

    async def update_dataset(self, tenant_id: str, dataset_id: str, changes: Mapping[str, Any]) -> Dataset | None:
        assert set(changes) <= DATASET_MUTABLE, changes
        sets = [f"{column} = ?" for column in changes]
        values = [_dataset_value(column, value) for column, value in changes.items()]

        async def op(c: PgConn) -> asyncpg.Record | None:
            changed = sets and await c.execute(
                f"UPDATE datasets SET {', '.join(sets)} WHERE id = ? AND tenant_id = ? AND status != 'deleted'",
                *values, dataset_id, tenant_id,
            )
            row = await c.fetchrow("SELECT * FROM datasets WHERE id = ? AND tenant_id = ?", dataset_id, tenant_id)
            if changed:
                ds = _dataset(row)
                await emit(c, tenant_id, "dataset.updated", ev.dataset_updated(ds, [k for k in changes if k != "updated_at"]),
                           ds.updated_at)
            return row

        row = await self.write(op)
        return None if row is None else _dataset(row)

    async def list_catalog(self, after: int | None, limit: int) -> list[CatalogEntry]:
        clause, params = _page_clause(after)

        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch(
                "SELECT d.*, t.name AS provider_name FROM datasets d JOIN tenants t ON t.id = d.tenant_id"
                f" WHERE {IN_CATALOG} {clause.replace('seq', 'd.seq')}"
                " ORDER BY d.seq DESC LIMIT ?",
                *params, limit,
            )

        return [CatalogEntry(_dataset(r), r["provider_name"]) for r in await self.read(op)]

    # -- idempotency ----------------------------------------------------------------
    async def idempotency_begin(
        self,
        principal: str,
        key: str,
        fingerprint: str,
        now: datetime,
        expires_at: datetime,
        stale_before: datetime,
    ) -> IdempotencyRecord | None:
        async def op(c: PgConn) -> asyncpg.Record | None:
            row = await c.fetchrow("SELECT * FROM idempotency_keys WHERE principal = ? AND key = ? FOR UPDATE", principal, key)
            if row is not None:
                expired = row["expires_at"] <= now
                dead = row["state"] == "in_progress" and row["locked_at"] < stale_before
                if not (expired or dead):
                    return row
                await c.execute("DELETE FROM idempotency_keys WHERE principal = ? AND key = ?", principal, key)
            await c.execute(
                "INSERT INTO idempotency_keys (principal, key, fingerprint, state, created_at, locked_at, expires_at)"
                " VALUES (?, ?, ?, 'in_progress', ?, ?, ?)",
                principal, key, fingerprint, now, now, expires_at,
            )
            return None

        row = await self.write(op)
        return None if row is None else _idem(row)

    async def idempotency_finish(self, principal: str, key: str, status_code: int, response: bytes) -> None:
        await self._exec(
            "UPDATE idempotency_keys SET state = 'done', status_code = ?, response = ? WHERE principal = ? AND key = ?",
            status_code, response, principal, key,
        )

    async def idempotency_release(self, principal: str, key: str) -> None:
        await self._exec("DELETE FROM idempotency_keys WHERE principal = ? AND key = ? AND state = 'in_progress'", principal, key)

    async def purge_idempotency(self, now: datetime) -> int:
        return await self._exec("DELETE FROM idempotency_keys WHERE expires_at <= ?", now)
