"""Shared fixtures: a real service (its store, its blob store, Hypercorn on loopback) per test.

``IPTO_TEST_BACKEND`` picks the backends the whole suite runs on:

* ``local`` (default): SQLite and the local blob store, as ``ipto serve`` embeds them;
* ``postgres``: a throwaway PostgreSQL cluster (fresh database per test) and local blobs;
* ``postgres-s3``: that PostgreSQL and a SeaweedFS S3 server (own key prefix per test).

The servers start once per session and a failure to start fails the run: never a skip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from engine.config import Config, load_config
from engine.service import ServiceHandle, run_service

_emails = itertools.count()
_prefixes = itertools.count()

BACKEND = os.environ.get("IPTO_TEST_BACKEND", "local")
if BACKEND not in ("local", "postgres", "postgres-s3"):
    raise RuntimeError(f"IPTO_TEST_BACKEND={BACKEND!r}: expected local, postgres or postgres-s3")
NETWORK_STORE = BACKEND != "local"


@dataclasses.dataclass
class _Servers:
    postgres: Any = None
    s3: Any = None


_servers = _Servers()


def backend_overrides() -> dict[str, Any]:
    """Config keys that put one test on the selected backends (a fresh database, its own prefix)."""
    out: dict[str, Any] = {}
    if _servers.postgres is not None:
        out["store.url"] = _servers.postgres.fresh_database()
    if _servers.s3 is not None:
        s3 = _servers.s3
        out.update({
            "blobs.backend": "s3", "blobs.s3_endpoint": s3.endpoint, "blobs.s3_region": s3.region,
            "blobs.s3_bucket": s3.bucket, "blobs.s3_access_key": s3.access_key, "blobs.s3_secret_key": s3.secret_key,
            "blobs.s3_prefix": f"t{os.getpid()}-{next(_prefixes)}/",
        })
    return out


def as_env(overrides: dict[str, Any]) -> dict[str, str]:
    """Config overrides as the ``IPTO_<SECTION>_<KEY>`` variables a child ``ipto serve`` reads."""
    return {"IPTO_" + key.replace(".", "_").upper(): str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in overrides.items()}


def backend_env(cfg: Config) -> dict[str, str]:
    """The environment a child process (``ipto …``) needs to reach ``cfg``'s store and blobs."""
    keys = {"store.url": cfg.store.url, **{f"blobs.{f.name}": getattr(cfg.blobs, f.name) for f in dataclasses.fields(cfg.blobs)}}
    return {**os.environ, **as_env(keys)}


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """The repo's defaults with a private data dir and a free port, ignoring the caller's env,
    on the backends ``IPTO_TEST_BACKEND`` selects."""
    # Deliveries in this process (tests fake its resolver and read its worker); the delivery
    # process is tested where the engine runs as `ipto serve` (tests/webhooks/test_recovery.py).
    return load_config(env={}, overrides={"data_dir": data_dir, "http.port": 0, "webhooks.own_process": False,
                                          **backend_overrides(), **overrides})


S3 = BACKEND == "postgres-s3"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local_blobs: about the engine's own /blobs/ route, which S3 replaces")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On S3 the engine has no /blobs/ route: tests of that route are not collected (their
    S3 counterparts are the tests that check what S3 itself refuses)."""
    if S3:
        kept = [item for item in items if item.get_closest_marker("local_blobs") is None]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[item for item in items if item not in kept])
            items[:] = kept


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """tests/multiprocess needs PostgreSQL and S3: it belongs to the postgres-s3 pass only;
    tests/store/test_postgres_*.py are about PostgreSQL itself: the PostgreSQL passes only."""
    if collection_path.name == "multiprocess" and BACKEND != "postgres-s3":
        return True
    if collection_path.name.startswith("test_postgres_") and BACKEND == "local":
        return True
    return None


@pytest.fixture(scope="session", autouse=True)
def _backend_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Start the servers the selected backend needs, for the whole session."""
    with contextlib.ExitStack() as stack:
        if BACKEND in ("postgres", "postgres-s3"):
            from tests.pgserver import running_postgres

            _servers.postgres = stack.enter_context(running_postgres())
            _migrate_template(_servers.postgres)
            stack.callback(setattr, _servers, "postgres", None)
        if BACKEND == "postgres-s3":
            from tests.s3server import start_seaweedfs

            _servers.s3 = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
            stack.callback(_servers.s3.stop)
            stack.callback(setattr, _servers, "s3", None)
        yield


def _migrate_template(server: Any) -> None:
    import asyncio

    import asyncpg

    from engine.store.postgres.store import migrate
    from tests.pgserver import TEMPLATE

    async def run() -> None:
        conn = await asyncpg.connect(server.url(TEMPLATE))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(name="cfg")
def _cfg(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data")


@pytest.fixture(name="service")
async def _service(nursery: trio.Nursery, cfg: Config) -> AsyncIterator[ServiceHandle]:
    handle: ServiceHandle = await nursery.start(run_service, cfg)
    yield handle
    handle.stop()


@pytest.fixture(name="client")
async def _client(service: ServiceHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        yield client


@dataclasses.dataclass
class Account:
    token: str
    user_id: str
    tenant_id: str
    email: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def signup(client: httpx.AsyncClient, email: str | None = None, password: str = "correct horse battery") -> Account:
    email = email or f"user{next(_emails)}@example.com"
    r = await client.post("/v1/auth/signup", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    return Account(data["token"], data["user"]["user_id"], data["tenant"]["tenant_id"], email)


@pytest.fixture(name="alice")
async def _alice(client: httpx.AsyncClient) -> Account:
    return await signup(client)


@pytest.fixture(name="bob")
async def _bob(client: httpx.AsyncClient) -> Account:
    return await signup(client)


async def create_dataset(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/datasets", headers=headers, json={"name": "Test set", **fields})
    assert r.status_code == 201, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


async def create_key(client: httpx.AsyncClient, headers: dict[str, str], scopes: list[str], **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/api-keys", headers=headers, json={"name": "k", "scopes": scopes, **fields})
    assert r.status_code == 201, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of an error envelope (checking the envelope's shape on the way)."""
    body = response.json()
    assert set(body) == {"error", "request_id", "timestamp"}, body
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body["error"]  # type: ignore[no-any-return]
