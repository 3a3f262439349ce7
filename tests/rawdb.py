"""Reading the engine's database behind its back, on either store: what is at rest."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import sqlite3
import subprocess
from typing import Any

from engine.config import Config
from engine.store.postgres.access import numbered


def _sqlite_path(cfg: Config) -> str:
    return cfg.store_url[len("sqlite:///"):]


def query(cfg: Config, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (``?`` placeholders) as tuples, straight from the database."""
    if cfg.store_url.startswith("sqlite"):
        with sqlite3.connect(_sqlite_path(cfg)) as db:
            return db.execute(sql, params).fetchall()

    async def run() -> list[tuple[Any, ...]]:
        import asyncpg

        conn = await asyncpg.connect(cfg.store_url)
        try:
            return [tuple(r) for r in await conn.fetch(numbered(sql), *params)]
        finally:
            await conn.close()

    # Its own thread: the test's thread runs Trio (and maybe trio-asyncio's loop).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def dump(cfg: Config) -> str:
    """Every row of every table, as text."""
    if cfg.store_url.startswith("sqlite"):
        with sqlite3.connect(_sqlite_path(cfg)) as db:
            return "\n".join(db.iterdump())
    pg_dump = shutil.which("pg_dump") or "pg_dump"
    return subprocess.run([pg_dump, "--data-only", cfg.store_url], capture_output=True, text=True, check=True).stdout
