"""Persistence: the store interface and the backend chosen by ``store.url``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from engine.config import Config, ConfigError
from engine.store.base import Store

__all__ = ["Store", "open_store"]


@contextlib.asynccontextmanager
async def open_store(cfg: Config) -> AsyncIterator[Store]:
    """Open the store named by ``cfg.store_url`` (migrated) for the duration of the block.

    PostgreSQL needs the asyncio loop of ``trio_asyncio.open_loop()`` around this."""
    url = cfg.store_url
    if url.startswith("sqlite:///"):
        from engine.store.sqlite.store import SqliteStore

        processes = cfg.http.workers + (1 if cfg.webhooks.own_process else 0)  # the delivery process writes too
        async with SqliteStore.open(Path(url[len("sqlite:///"):]), readers=cfg.store.readers, processes=processes) as store:
            yield store
    elif url.startswith(("postgresql://", "postgres://")):
        from engine.store.postgres.store import PgStore

        async with PgStore.open(url, pool_size=cfg.store.pool_size, command_timeout=cfg.store.command_timeout_seconds) as store:
            yield store
    else:
        raise ConfigError(f"invalid config value for store.url: {url!r} (expected sqlite:///… or postgresql://…)")
