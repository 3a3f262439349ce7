"""A throwaway PostgreSQL cluster for the tests, from the installed server binaries.

``initdb`` and ``postgres`` refuse to run as root, so as root the cluster belongs to the
``postgres`` user. The cluster listens on loopback on a free port, with durability off
(a test database is thrown away anyway) unless ``durable=True`` asks for PostgreSQL's
crash-safe defaults (the benchmark compares it with SQLite at ``synchronous=FULL``).
Every test gets a fresh database cloned from a template that is already migrated, so a
test pays for ``CREATE DATABASE``, not for the migrations. Failing to start raises: the
suite fails, it never skips.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TEMPLATE = "ipto_template"


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise RuntimeError("PostgreSQL server binaries not found (install Debian's postgresql package)")
    return Path(versions[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class PgServer:
    port: int
    directory: Path
    _as_user: list[str]
    _bin: Path
    _names: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "-d", database, "-c", sql],
            capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout

    def fresh_database(self) -> str:
        """A new, migrated database; return its URL."""
        name = f"ipto_t{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self._as_user, str(self._bin / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate",
                        "-w", "stop"], capture_output=True, check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres(durable: bool = False) -> PgServer:
    """Start a private cluster; the template database exists but is not migrated yet.

    ``durable`` keeps ``fsync``, ``synchronous_commit`` and ``full_page_writes`` on (a commit
    waits for its WAL flush), as a production server runs; by default all three are off."""
    bin_dir = _bin_dir()
    directory = Path(tempfile.mkdtemp(prefix="ipto-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = directory / "data"
    run = [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
           "--no-sync", "--locale=C"]
    out = subprocess.run(run, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"initdb failed: {out.stderr.strip() or out.stdout.strip()}")
    durability = "on" if durable else "off"
    options = (f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync={durability}"
               f" -c synchronous_commit={durability} -c full_page_writes={durability}"
               " -c max_connections=400 -c shared_buffers=64MB")
    out = subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"),
                          "-w", "-t", "60", "start"], capture_output=True, text=True, check=False)
    server = PgServer(port, directory, as_user, bin_dir)
    if out.returncode != 0:
        log = (directory / "log").read_text() if (directory / "log").exists() else ""
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start: {out.stderr.strip()} {log[-2000:]}")
    deadline = time.monotonic() + 30
    while True:
        try:
            server.psql(f"CREATE DATABASE {TEMPLATE}")
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.2)
    return server


@contextlib.contextmanager
def running_postgres() -> Iterator[PgServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
