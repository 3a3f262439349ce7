"""Several engine processes behind one socket: ``ipto serve --workers N``.

One Python event loop uses one core; the per-request work (HTTP parsing, Quart, auth,
store lookups) does not spread over threads. With ``http.workers`` above 1 the process
started by ``ipto serve`` (the *primary*) binds the listening socket itself and starts
``N - 1`` worker processes (``python -m engine.worker``) that inherit it, so the kernel
hands each new connection to whichever process accepts first.

* **Embedded store (SQLite + local blobs).** The primary alone runs what must run once:
  every dataset's actor, the review clock, pipeline runs, import runners, maintenance.
  The workers serve HTTP and forward each actor message to the primary over a socket
  pair (:mod:`engine.actors.remote`), so one dataset's changes are still applied one at
  a time by one actor. All processes read and write the one SQLite file (WAL); a file
  lock orders their write transactions (:class:`~engine.store.sqlite.store.SqliteStore`),
  and another one a PUT and a confirm of the same upload (:class:`~engine.keyed_locks.KeyedLocks`).
* **PostgreSQL.** Every worker is a whole engine process, as several ``ipto serve`` on
  one database already are (leases share out the background work), except that it
  forwards its actor messages to the primary as on the embedded store: the primary runs
  the datasets' actors, under their leases. Left to leases, one busy dataset's actor went
  back and forth between the processes of one engine, a lease hand-over at every turn.

A worker dies with the primary (``PR_SET_PDEATHSIG``, SIGKILL: a ``kill -9`` of the
primary takes its workers with it, and the next start recovers from the store as after
any crash). On an orderly stop the primary sends its workers SIGTERM; each drains its
requests, and the primary's actors stay up until every worker has exited. A worker that
dies on its own is logged and not replaced: the others go on accepting every connection.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import structlog
import trio

from engine.config import Config
from engine.memory import cores

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is given on its stdin: the configuration and inherited fds."""

    cfg: Config
    listen_fd: int
    link_fd: int | None  # the socket to the primary's actors
    primary_pid: int


def resolve_workers(cfg: Config) -> Config:
    """``http.workers = 0``: one per CPU core this process may run on (``taskset`` counts)."""
    if cfg.http.workers != 0:
        return cfg
    return dataclasses.replace(cfg, http=dataclasses.replace(cfg.http, workers=cores()))


def embedded(cfg: Config) -> bool:
    return cfg.store_url.startswith("sqlite")


def listening_socket(cfg: Config) -> socket.socket:
    """The one socket every process accepts on (the port is already resolved)."""
    family = socket.AF_INET6 if ":" in cfg.http.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((cfg.http.host, cfg.http.port))
    sock.listen(cfg.http.backlog)
    sock.set_inheritable(True)
    return sock


@dataclass
class Workers:
    """The primary's handle on its worker processes."""

    procs: list[subprocess.Popen[bytes]]
    links: list[socket.socket]  # the primary's ends of the actor links
    exited: Callable[[int], None] | None = None  # told the pid of a worker that died on its own

    @classmethod
    def start(cls, cfg: Config, listener: socket.socket, exited: Callable[[int], None] | None = None) -> Workers:
        """Start ``cfg.http.workers - 1`` workers on ``listener``. Called on the Trio thread
        (``PR_SET_PDEATHSIG`` fires when the thread that forked the child exits, so never
        from a worker thread)."""
        procs: list[subprocess.Popen[bytes]] = []
        links: list[socket.socket] = []
        for _ in range(cfg.http.workers - 1):
            ours, theirs = socket.socketpair()
            theirs.set_inheritable(True)
            links.append(ours)
            spec = WorkerSpec(cfg, listener.fileno(), theirs.fileno(), os.getpid())
            fds = (listener.fileno(), theirs.fileno())
            proc = subprocess.Popen(
                [sys.executable, "-m", "engine.worker"], stdin=subprocess.PIPE, pass_fds=fds, preexec_fn=die_with_parent,
            )
            assert proc.stdin is not None
            proc.stdin.write(pickle.dumps(spec))
            proc.stdin.close()
            theirs.close()
            procs.append(proc)
        log.info("workers_started", workers=len(procs) + 1, pids=[p.pid for p in procs])
        return cls(procs, links, exited)

    def terminate(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)

    async def wait(self, grace_seconds: float) -> None:
        """Wait for every worker to exit; SIGKILL what is left after ``grace_seconds``."""
        with trio.move_on_after(grace_seconds):
            for proc in self.procs:
                while proc.poll() is None:
                    await trio.sleep(0.05)
        for proc in self.procs:
            if proc.poll() is None:
                log.warning("worker_killed", pid=proc.pid)
                proc.kill()
                proc.wait()

    async def watch(self) -> None:
        """Log a worker that exits on its own (the others keep serving the socket)."""
        reported: set[int] = set()
        while True:
            await trio.sleep(1.0)
            for proc in self.procs:
                if proc.poll() is not None and proc.pid not in reported:
                    reported.add(proc.pid)
                    log.error("worker_exited", pid=proc.pid, returncode=proc.returncode)
                    if self.exited is not None:
                        self.exited(proc.pid)


def die_with_parent() -> None:
    """``preexec_fn`` of every child ``ipto serve`` starts (HTTP workers, the delivery
    process): in the child, before exec, SIGKILL when its parent dies, however it dies.
    Start the child from the Trio thread: the signal fires when the forking *thread* exits."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def read_spec(stream: IO[bytes]) -> WorkerSpec:
    spec = pickle.loads(stream.read())
    if not isinstance(spec, WorkerSpec):
        raise SystemExit("engine.worker: started without a worker spec (only `ipto serve --workers` starts workers)")
    if os.getppid() != spec.primary_pid:  # the primary died before our death signal was set
        raise SystemExit(1)
    return spec
