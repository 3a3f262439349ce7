"""Deliveries in a process of their own (``webhooks.own_process``), supervised by ``ipto serve``.

Sending webhooks is CPU work (claim, sign, send, record: bench/README.md "Webhook
fan-out") that would otherwise run on the event loop that serves uploads. With
``own_process`` the serving process starts ``python -m engine.webhooks.process``, which
opens the same store and runs the :class:`~engine.webhooks.worker.DeliveryWorker` on a
core of its own.

* **Supervision.** The child dies with its parent (``PR_SET_PDEATHSIG``, SIGKILL, as the
  HTTP workers do); a child that exits on its own is logged and started again after a
  growing pause (1 s to 30 s). An orderly stop sends it SIGTERM and waits.
* **Leases.** A restarted child (or one started after a ``kill -9`` of everything) takes
  over at once the leases of owners proven dead (:mod:`.owner`); a live one's stand.
* **Wake-ups.** The parent's :meth:`DeliveryProcess.wake` (a new endpoint, a manual retry)
  writes a byte on a socket pair; otherwise the worker polls (``poll_seconds``) and looks
  again whenever an attempt ends, as in one process.
* **SQLite.** Two processes write the file, so every process takes the write file lock
  (``open_store`` counts the delivery process).

* **Metrics.** With ``own_process`` the engine keeps its metrics in prometheus-client's
  multiprocess files (as with ``--workers``): the child counts ``ipto_webhook_deliveries_total``
  there and any scrape of the engine sums it in.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
import trio

from engine.config import Config
from engine.ids import utcnow
from engine.metrics import NO_METRICS, Metrics, MetricsSink, shared_dir_for
from engine.webhooks.keys import Sealer
from engine.webhooks.owner import new_owner
from engine.webhooks.sender import Sender
from engine.webhooks.worker import DeliveryWorker
from engine.workers import die_with_parent

log = structlog.get_logger(__name__)

RESTART_MIN_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
POLL_EXIT_SECONDS = 0.2


def delivery_worker(cfg: Config, store: Any, sealer: Sealer, now: Callable[[], datetime] = utcnow) -> DeliveryWorker:
    """The worker with its sender, as either mode runs it."""
    hooks = cfg.webhooks
    sender = Sender(allow_private=hooks.allow_private_targets, timeout_seconds=hooks.timeout_seconds,
                    max_response_bytes=hooks.max_response_bytes)
    return DeliveryWorker(store, sealer, hooks, sender.send, now, new_owner(), close=sender.aclose)


@dataclass(frozen=True)
class DeliverySpec:
    """What the child is given on its stdin."""

    cfg: Config
    wake_fd: int
    parent_pid: int


class DeliveryProcess:
    """The parent's handle on the delivery process: runs (and restarts) it, wakes it."""

    metrics: MetricsSink = NO_METRICS  # unused: the child counts its own (in the shared metric files)

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._wake: socket.socket | None = None
        self.pid: int | None = None

    def wake(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(OSError):  # full (a wake is already pending) or the child is gone
                self._wake.send(b"w")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        structlog.contextvars.clear_contextvars()
        pause = RESTART_MIN_SECONDS
        started = False
        while True:
            proc = self._start()
            if not started:
                task_status.started()
                started = True
            try:
                while proc.poll() is None:
                    await trio.sleep(POLL_EXIT_SECONDS)
            finally:
                if proc.poll() is None:
                    with trio.CancelScope(shield=True):
                        await self._stop(proc)
                if self._wake is not None:
                    self._wake.close()
                    self._wake = None
            log.error("delivery_process_exited", pid=proc.pid, returncode=proc.returncode, restart_in=pause)
            await trio.sleep(pause)
            pause = min(pause * 2, RESTART_MAX_SECONDS)

    def _start(self) -> subprocess.Popen[bytes]:
        """Start the child. On the Trio thread: ``PR_SET_PDEATHSIG`` fires when the forking thread exits."""
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.set_inheritable(True)
        proc = subprocess.Popen([sys.executable, "-m", "engine.webhooks.process"], stdin=subprocess.PIPE,
                                pass_fds=(theirs.fileno(),), preexec_fn=die_with_parent)
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(DeliverySpec(self.cfg, theirs.fileno(), os.getpid())))
        proc.stdin.close()
        theirs.close()
        self._wake = ours
        self.pid = proc.pid
        log.info("delivery_process_started", pid=proc.pid)
        return proc

    async def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.cfg.webhooks.timeout_seconds + 5):
            while proc.poll() is None:
                await trio.sleep(0.05)
        if proc.poll() is None:
            log.warning("delivery_process_killed", pid=proc.pid)
            proc.kill()
        proc.wait()


async def _follow_wakes(sock: trio.socket.SocketType, worker: DeliveryWorker, gone: Callable[[], Awaitable[None]]) -> None:
    while True:
        data = await sock.recv(4096)
        if not data:
            await gone()  # the parent closed its end: it is stopping or gone
            return
        worker.wake()


async def _child(spec: DeliverySpec) -> None:
    import trio_asyncio

    from engine.datadir import load_secret  # not engine.service: the HTTP app's imports are ~35 MiB
    from engine.store import open_store

    cfg = spec.cfg
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio_asyncio.open_loop(), open_store(cfg) as store:
            secret = load_secret(cfg.data_dir)
            if getattr(store, "shared", False):
                secret = await store.shared_secret(secret)  # type: ignore[attr-defined]
            worker = delivery_worker(cfg, store, Sealer(secret))
            shared = shared_dir_for(cfg)
            if shared is not None:  # counted in the engine's metric files, as the HTTP workers' are
                worker.metrics = Metrics(shared)
            wake = trio.socket.from_stdlib_socket(socket.socket(fileno=spec.wake_fd))
            async with trio.open_nursery() as nursery:

                async def stop() -> None:
                    nursery.cancel_scope.cancel()

                await nursery.start(worker.run)
                nursery.start_soon(_follow_wakes, wake, worker, stop)
                log.info("delivery_process_running", pid=os.getpid(), owner=worker.owner)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    log.info("delivery_process_stopped", pid=os.getpid())


def main() -> None:
    # Run as ``-m``, this module is ``__main__``; the spec was pickled as the importable one's.
    from engine.webhooks import process

    spec = pickle.loads(sys.stdin.buffer.read())
    if not isinstance(spec, process.DeliverySpec):
        raise SystemExit("engine.webhooks.process: started without a spec (ipto serve starts it)")
    if os.getppid() != spec.parent_pid:  # the parent died before our death signal was set
        raise SystemExit(1)
    from engine.logging import configure_logging

    configure_logging(spec.cfg.log)
    trio.run(process._child, spec)


if __name__ == "__main__":
    main()
