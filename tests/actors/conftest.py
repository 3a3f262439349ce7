"""A whole engine without HTTP, for deterministic tests under ``autojump_clock``.

Wall-clock time follows Trio's clock, so a 72-hour review window passes in milliseconds
of real time. On SQLite the store and blob store run inline (no worker threads). On a
network backend (``IPTO_TEST_BACKEND``) the clock may only jump once the engine has been
idle for a moment of real time: a virtual clock must not leap past a deadline while a
query is still on its way to PostgreSQL, which makes months of virtual time slow there; a
test that drives such spans passes a :class:`SteppedClock` and runs the clocks' steps itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio
from trio.testing import MockClock

from engine.auth import ADMIN_SCOPE, TENANT_SCOPES, Principal
from engine.config import Config, load_config
from engine.ids import new_id
from engine.offload import inline
from engine.services import Services
from engine.store import Store, open_store
from engine.store.records import Membership, ObjectRecord, Tenant, User
from engine.store.sqlite.store import SqliteStore
from tests.conftest import NETWORK_STORE, backend_overrides

START = datetime(2026, 4, 5, 10, 0, tzinfo=UTC)


def trio_wall_clock(start: datetime = START):
    origin = trio.current_time()
    return lambda: start + timedelta(seconds=trio.current_time() - origin)


class SteppedClock:
    """An injected wall clock that moves only when the test moves it: no trio timer, no
    waiting, so it runs alike on every store (under autojump a network store makes each
    jump wait for real idleness). A test that uses it drives the clocks' steps itself."""

    def __init__(self, start: datetime = START) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture(name="autojump_clock")
def _autojump_clock() -> MockClock:
    """pytest-trio's autojump clock, waiting for real idleness on a network backend."""
    return MockClock(autojump_threshold=0.25 if NETWORK_STORE else 0)


@contextlib.asynccontextmanager
async def _store(cfg: Config) -> AsyncIterator[Store]:
    if cfg.store_url.startswith("sqlite"):
        async with SqliteStore.open(cfg.data_dir / "engine.db", readers=1, offload=inline) as store:
            yield store
    else:
        async with open_store(cfg) as store:
            yield store


@contextlib.asynccontextmanager
async def open_engine(data_dir: Path, start: datetime = START, now: Callable[[], datetime] | None = None,
                      **overrides: Any) -> AsyncIterator[Services]:
    """An engine on ``data_dir``; opened again on the same dir, it finds the same database and blobs.
    Its wall clock follows Trio's (from ``start``), or is ``now`` (e.g. a :class:`SteppedClock`;
    then the review and settlement clocks are not started: the test calls their steps)."""
    if data_dir not in _backends:
        _backends[data_dir] = backend_overrides()
    # One process: no lease heartbeats or store re-reads to wake a virtual clock every few seconds.
    quiet = {"actors.lease_ttl_seconds": 1e7, "actors.scan_seconds": 1e7, "billing.settle_scan_seconds": 1e7}
    # Deliveries in this process, as make_config has them (the delivery process is ipto serve's).
    cfg = load_config(env={}, overrides={"data_dir": data_dir, "http.port": 0, "webhooks.own_process": False,
                                         **_backends[data_dir], **quiet, **overrides})
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    async with (
        trio_asyncio.open_loop(),
        _store(cfg) as store,
        Services.open(cfg, store, b"k" * 32, now=now or trio_wall_clock(start), offload=inline) as svc,
        trio.open_nursery() as leasing,
    ):
        await leasing.start(svc.leases.run)
        async with svc.actors.running(grace_seconds=1):
            await svc.pipeline.resume_unfinished()
            await svc.imports.resume_pending()
            if now is None:
                svc.actors.start_soon(svc.review_clock.run)
                svc.actors.start_soon(svc.settlement.run)
            yield svc
        leasing.cancel_scope.cancel()


# The backend keys an engine was first opened with, per data dir: a restart must find the
# same database and key prefix, not fresh ones.
_backends: dict[Path, dict[str, Any]] = {}


async def tenant(svc: Services, name: str = "acme") -> Principal:
    now = svc.now()
    t = Tenant(new_id("tnt"), name, now)
    u = User(new_id("usr"), f"{t.id}@example.com", None, "unused-hash", False, now)
    await svc.store.create_account(t, u, Membership(t.id, u.id, "owner", now))
    return Principal("session", u.id, t.id, frozenset(TENANT_SCOPES), ("owner",))


def admin() -> Principal:
    return Principal("session", "usr_admin", "tnt_platform", frozenset({ADMIN_SCOPE}), ("platform_admin",), True)


async def _body(data: bytes):
    yield data


async def staged_object(svc: Services, owner: Principal, dataset_id: str, data: bytes = b"hello world",
                        mime: str = "text/plain", filename: str = "a.txt") -> ObjectRecord:
    init = await svc.objects.initiate(owner, dataset_id, {"filename": filename, "content_type": mime, "size_bytes": len(data)})
    if svc.blobs.direct_uploads:  # S3: the bytes go to the bucket, not through the engine
        async with httpx.AsyncClient() as client:
            (await client.put(init.upload_url, content=data)).raise_for_status()
    else:
        await svc.objects.receive_part(init.upload.id, 1, len(data), len(data), _body(data))
    return await svc.objects.confirm(owner, init.obj.id, None)
