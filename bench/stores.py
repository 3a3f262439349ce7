"""Which store the engine under test runs on: SQLite (the default), PostgreSQL, or both.

``--store postgres`` (or ``both``) starts one private PostgreSQL cluster for the benchmark,
from the installed server binaries (:func:`tests.pgserver.start_postgres`), with durability
on — ``fsync``, ``synchronous_commit`` and ``full_page_writes`` — so that a commit waits
for its WAL flush as SQLite's waits for its fsync (``synchronous=FULL``). Every engine
started on it gets a fresh database through ``IPTO_STORE_URL`` and migrates it at start;
blobs stay in the engine's local data dir either way. With ``both``, the stores take turns
within each run (who goes first rotates between runs) and :func:`versus` adds a section
giving each store-dependent figure on both stores and the ratio PostgreSQL ÷ SQLite.

The cluster is stopped on the way out. pg_ctl detaches the postmaster from the benchmark,
so ``PR_SET_PDEATHSIG`` cannot reach it: a small watchdog process (``python -m
bench.stores --watch DIR``, in its own session) waits for its stdin to close — which the
kernel does when the benchmark exits, however it exits, SIGKILL included — and then shuts
down whatever of the cluster is still running.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import harness
from bench.report import Row, Section
from tests.pgserver import PgServer, start_postgres

NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# What the benchmark's cluster runs with (tests/pgserver.py, durable=True), for the tables.
PG_SETTINGS = ("fsync=on, synchronous_commit=on, full_page_writes=on, shared_buffers=64MB, max_connections=400, "
               "the rest PostgreSQL's defaults")


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", choices=(*NAMES, "both"), default="sqlite",
                        help="the engine's store: SQLite (default), a durable PostgreSQL cluster started here, "
                             "or both in turn with the ratio PostgreSQL ÷ SQLite")


@dataclass
class Stores:
    """The stores of one benchmark command and, if PostgreSQL is one of them, its cluster."""

    names: tuple[str, ...]
    postgres: PgServer | None = None
    postgres_version: str = ""
    _databases: Iterator[int] = field(default_factory=itertools.count)

    def env(self, store: str) -> dict[str, str]:
        """The engine's environment for ``store``; on PostgreSQL a new, empty database each call."""
        if store == "sqlite":
            return {}
        assert self.postgres is not None
        name = f"bench_{next(self._databases)}"
        self.postgres.psql(f"CREATE DATABASE {name}")
        return {"IPTO_STORE_URL": self.postgres.url(name)}

    def order(self, run: int) -> tuple[str, ...]:
        """The stores in the order run ``run`` measures them (the first one rotates)."""
        k = run % len(self.names)
        return self.names[k:] + self.names[:k]

    @property
    def several(self) -> bool:
        return len(self.names) > 1

    def key(self, key: str, store: str) -> str:
        """A row key for ``store``: unchanged when there is one store, so ``all``'s JSON keeps its keys."""
        return f"{key}@{store}" if self.several else key

    def label(self, label: str, store: str) -> str:
        return f"{NAMES[store]}: {label}" if self.several else label

    def title(self, title: str) -> str:
        return f"{title} (PostgreSQL store)" if self.names == ("postgres",) else title

    def baselines(self) -> list[str]:
        """The sentence a section adds when PostgreSQL is among its stores."""
        if self.postgres is None:
            return []
        return [f"PostgreSQL {self.postgres_version} on loopback TCP, started by the benchmark ({PG_SETTINGS}); "
                "the engine's store.pool_size default; blobs local, as on SQLite (synchronous=FULL, WAL)."]


def _watchdog(directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bench.stores", "--watch", str(directory)], stdin=subprocess.PIPE,
                            cwd=harness.ROOT, start_new_session=True)


@contextlib.contextmanager
def open_stores(choice: str, work: Path) -> Iterator[Stores]:
    """The stores ``--store`` names; a PostgreSQL cluster for the block if needed, its log kept in ``work``."""
    names = tuple(NAMES) if choice == "both" else (choice,)
    if "postgres" not in names:
        yield Stores(names)
        return
    print("store: starting a durable PostgreSQL cluster ...", flush=True)
    server = start_postgres(durable=True)
    watchdog = _watchdog(server.directory)
    try:
        yield Stores(names, server, server.psql("SHOW server_version").strip())
    finally:
        work.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(server.directory / "log", work / "postgres.log")
        server.stop()
        assert watchdog.stdin is not None
        watchdog.stdin.close()
        watchdog.wait(timeout=60)


def versus(section: Section, stores: Stores, keys: list[str]) -> list[Section]:
    """With both stores: a section of ``keys``' rows side by side, PostgreSQL ÷ SQLite; else none."""
    if not stores.several:
        return []
    rows = []
    for key in keys:
        base, other = section.row(stores.key(key, "sqlite")), section.row(stores.key(key, "postgres"))
        rows.append(Row(key, base.label.removeprefix(f"{NAMES['sqlite']}: "), base.unit, other.values,
                        base_values=base.values, lower_is_better=base.lower_is_better, chart=base.chart))
    out = Section(f"{section.key}_versus", f"PostgreSQL vs SQLite — {section.title}", rows,
                  versus=(NAMES["sqlite"], NAMES["postgres"]))
    out.baselines = ["each row: the figure on PostgreSQL beside the same figure on SQLite, measured in the same runs "
                     "(the stores take turns); the ratio is PostgreSQL's median ÷ SQLite's."]
    out.notes = ["the engine's peak RSS is the engine process's alone: PostgreSQL's own processes are not in it."]
    out.meta = dict(section.meta)
    return [out]


def watch(directory: Path) -> None:
    """Block until stdin closes, then stop the cluster in ``directory`` if it still runs and remove it."""
    sys.stdin.buffer.read()
    pidfile = directory / "data" / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # ProcessLookupError (an OSError) once it is gone
            time.sleep(0.1)
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--watch"] or len(sys.argv) != 3:
        sys.exit("usage: python -m bench.stores --watch CLUSTER_DIR")
    watch(Path(sys.argv[2]))
