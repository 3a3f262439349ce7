"""The engine of ``python -m bench webhooks``, with the benchmark's event source in its process.

    python -m bench.webhook_engine --events-per-second 1000 --host 127.0.0.1 --port 8080 --data-dir DIR

Runs ``ipto serve`` as the engine's own CLI does (config/engine.toml and ``IPTO_*``), and
beside it :func:`event_source`: ``--events-per-second`` ``dataset.updated`` events written
into the engine's outbox through its store's API (``emit_events``: the engine's own
fan-out to the enabled endpoints), round-robin over the tenants that have webhooks, one
write transaction per tenth of a second. It shares the engine's store, so its writes queue
on the engine's own write lock as any other write does (a second process would meet it on
SQLite's file lock, whose busy handler sleeps and polls, and slow the passes unequally).
The delivery worker is not told of these events: it finds them as it finds any (its poll,
then whenever an attempt ends). Nothing of this is in the engine.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sqlite3
from pathlib import Path
from typing import Any

import structlog
import trio

from engine.config import load_config
from engine.ids import utcnow
from engine.logging import configure_logging
from engine.service import ServiceHandle, run_service

TICK_SECONDS = 0.1
TENANTS_SECONDS = 1.0

log = structlog.get_logger(__name__)


def _hook_tenants(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return [r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM webhooks ORDER BY tenant_id")]


async def event_source(store: Any, db: Path, rate: int) -> None:
    """``rate`` events per second into the outbox, round-robin over the tenants with webhooks."""
    structlog.contextvars.clear_contextvars()
    owed, n, last, looked = 0.0, 0, trio.current_time(), -TENANTS_SECONDS
    tenants: list[str] = []
    while True:
        await trio.sleep(TICK_SECONDS)
        t = trio.current_time()
        if t - looked >= TENANTS_SECONDS:
            tenants, looked = _hook_tenants(db), t
        owed += (t - last) * rate
        last = t
        batch = []
        while owed >= 1 and tenants:
            owed -= 1
            n += 1
            batch.append(
                (tenants[n % len(tenants)], "dataset.updated", {"dataset_id": "dset_bench", "changed": ["description"], "n": n})
            )
        if batch:
            await store.emit_events(batch, utcnow())


async def main(cfg: Any, rate: int) -> None:
    """The service and the event source until SIGINT or SIGTERM; then the source stops and the
    service drains as ``ipto serve`` does."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            handle: ServiceHandle = await nursery.start(functools.partial(run_service, cfg))
            source = trio.CancelScope()

            async def events() -> None:
                with source:
                    await event_source(handle.services.store, cfg.data_dir / "engine.db", rate)

            nursery.start_soon(events)
            async for signum in signals:
                log.info("shutdown_requested", signal=signal.Signals(signum).name)
                break
            source.cancel()
            handle.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events-per-second", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    config = load_config(overrides={"http.host": args.host, "http.port": args.port, "data_dir": args.data_dir})
    configure_logging(config.log)
    trio.run(main, config, args.events_per_second)
