"""Shared fixtures: a real service (SQLite store, Hypercorn on loopback) per test."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from engine.config import Config, load_config
from engine.service import ServiceHandle, run_service

_emails = itertools.count()


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """The repo's defaults with a private data dir and a free port, ignoring the caller's env."""
    return load_config(env={}, overrides={"data_dir": data_dir, "http.port": 0, **overrides})


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
