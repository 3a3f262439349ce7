"""``ipto serve``: the whole service under one ``trio.run``.

Start order: store (migrated) → services → supervisor → maintenance → HTTP.
Stop order (SIGINT/SIGTERM or :meth:`ServiceHandle.stop`): HTTP stops accepting and drains
in-flight requests, then maintenance and actors stop, then the store closes.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import hypercorn.trio
import hypercorn.trio.tcp_server
import structlog
import trio
import trio_asyncio
from hypercorn.config import Config as HypercornConfig

from engine.actors.remote import ActorLink, serve_link
from engine.config import Config, ConfigError
from engine.datadir import load_secret, secure_data_dir
from engine.http import direct_body, h11_buffer, one_write
from engine.http.app import create_app
from engine.http.blob_routes import BATCH_BYTES, create_asgi
from engine.http.body_guard import BodyGuard
from engine.http.hot import HotRoutes
from engine.http.metrics import metrics_asgi
from engine.metrics import reset_multiprocess_dir, shared_dir_for
from engine.services import Services
from engine.store import open_store
from engine.workers import Workers, WorkerSpec, embedded, listening_socket, resolve_workers

log = structlog.get_logger(__name__)

MAINTENANCE_INTERVAL_SECONDS = 60
# Hypercorn reads sockets 64 KiB at a time; larger reads raise upload throughput
# (DESIGN.md measured ~1.5x at 1 MiB; each read costs the loop the same Python work
# whatever its size). 512 KiB with a 2-message per-request queue keeps what one upload
# can buffer before backpressure stops reading its socket at ~1 MiB, so 8 concurrent
# uploads fit the 120 MiB server budget (bench/README.md).
SOCKET_READ_BYTES = BATCH_BYTES  # one read, one batch for the hashing thread (512 KiB)
APP_QUEUE_MESSAGES = 2
STALE_TMP_SECONDS = 3600


@dataclass
class ServiceHandle:
    """What a running service gives its starter: where it listens and how to stop it."""

    url: str
    services: Services
    _stop: trio.Event

    def stop(self) -> None:
        self._stop.set()


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """Refuse a second engine process on the same embedded data dir."""
    fh = open(data_dir / "engine.lock", "w")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise ConfigError(f"another ipto process is using the data dir {data_dir}") from None
    return fh


def _resolve_port(cfg: Config) -> Config:
    """``--port 0`` means "any free port": pick one now so presigned URLs name it."""
    if cfg.http.port != 0:
        return cfg
    with socket.socket(socket.AF_INET6 if ":" in cfg.http.host else socket.AF_INET) as sock:
        sock.bind((cfg.http.host, 0))
        port = sock.getsockname()[1]
    return dataclasses.replace(cfg, http=dataclasses.replace(cfg.http, port=port))


async def _maintenance(svc: Services) -> None:
    """Periodic clean-up: abandoned uploads, expired idempotency records and sessions,
    temporary files a crash left behind."""
    while True:
        try:
            abandoned = await svc.objects.sweep_abandoned()
            purged = await svc.idempotency.purge()
            sessions = await svc.store.purge_sessions(svc.identity.now())
            tmp = await svc.blobs.sweep_tmp(STALE_TMP_SECONDS)
            deliveries = await svc.webhooks.purge_log()
            if abandoned or purged or sessions or tmp or deliveries:
                log.info("maintenance_purged", uploads=abandoned, idempotency_keys=purged, sessions=sessions, tmp_files=tmp,
                         webhook_deliveries=deliveries)
        except Exception:
            log.exception("maintenance_failed")
        await trio.sleep(MAINTENANCE_INTERVAL_SECONDS)


async def _scan(svc: Services) -> None:
    """Several processes on one store: take over what a dead process left (its leases
    expired) and what nobody was woken for. Each scan claims unfinished pipeline jobs and
    datasets' import queues that no live lease covers (``FOR UPDATE SKIP LOCKED``: the
    processes scanning at once share the work out) and runs them here."""
    store: Any = svc.store
    ttl = svc.cfg.actors.lease_ttl_seconds
    while True:
        await trio.sleep(svc.cfg.actors.scan_seconds)
        try:
            jobs = await store.claim_unheld_jobs("pipeline", svc.leases.owner, ttl)
            datasets = await store.claim_unheld_import_runs(svc.leases.owner, ttl)
            for job in jobs:
                svc.pipeline.start(job)
            for dataset_id in datasets:
                svc.imports.ensure_runner(dataset_id)
            if jobs or datasets:
                log.info("scan_took_over", jobs=len(jobs), import_queues=len(datasets))
        except Exception:
            log.exception("scan_failed")


async def _bootstrap_admin(svc: Services) -> None:
    admin = svc.cfg.admin
    if admin.bootstrap_email and admin.bootstrap_password:
        user = await svc.identity.ensure_platform_admin(admin.bootstrap_email, admin.bootstrap_password)
        log.info("platform_admin_bootstrapped", user_id=user.id)


async def run_service(
    cfg: Config, *, worker: WorkerSpec | None = None,
    task_status: trio.TaskStatus[ServiceHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until stopped; ``task_status.started`` receives a :class:`ServiceHandle`.

    With ``http.workers`` above 1 this process is the primary and starts the workers
    (:mod:`engine.workers`); ``worker`` is given to each of those."""
    secure_data_dir(cfg.data_dir)  # umask 077; an older, broader data dir is tightened (and logged)
    cfg = resolve_workers(_resolve_port(cfg))
    lock = _lock_data_dir(cfg.data_dir) if worker is None and embedded(cfg) else None
    shared_metrics = shared_dir_for(cfg)
    if worker is None and shared_metrics is not None:
        reset_multiprocess_dir(shared_metrics)  # before any process records
    try:
        # asyncpg and aiobotocore are asyncio libraries: one asyncio loop, run by Trio, for the
        # service's life (DESIGN.md "Backends"); the embedded default never calls into it.
        async with trio_asyncio.open_loop(), open_store(cfg) as store:
            secret = load_secret(cfg.data_dir)
            if getattr(store, "shared", False):
                secret = await store.shared_secret(secret)  # type: ignore[attr-defined]  # every process signs alike
            async with Services.open(cfg, store, secret) as svc, trio.open_nursery() as leasing:
                if cfg.http.workers > 1:
                    svc.objects.share_locks(cfg.data_dir / "uploads.lock")
                await leasing.start(svc.leases.run)
                if worker is not None and worker.link_fd is not None and embedded(cfg):
                    await _serve_forwarding(cfg, svc, worker, task_status)
                else:
                    await _serve(cfg, svc, worker, task_status)
                leasing.cancel_scope.cancel()
                if svc.metrics is not None:
                    svc.metrics.process_exited()
    finally:
        if lock is not None:
            lock.close()
    log.info("service_stopped")


def _hypercorn_config(cfg: Config, listen_fd: int | None) -> HypercornConfig:
    hc = HypercornConfig()
    if listen_fd is None:
        host = f"[{cfg.http.host}]" if ":" in cfg.http.host else cfg.http.host
        hc.bind = [f"{host}:{cfg.http.port}"]
    else:
        hc.bind = [f"fd://{os.dup(listen_fd)}"]  # Hypercorn closes what it serves; the original stays ours
    hc.accesslog = None  # our own access line, with the request id, is logged by the app
    hc.errorlog = None
    hc.graceful_timeout = cfg.http.graceful_timeout_seconds
    hc.backlog = cfg.http.backlog  # Hypercorn's 100 overflows when many clients connect at once
    hc.read_timeout = None
    hc.max_app_queue_size = APP_QUEUE_MESSAGES
    hypercorn.trio.tcp_server.MAX_RECV = SOCKET_READ_BYTES
    h11_buffer.install()  # upload bodies reach the app without h11's copies
    direct_body.install()  # ... or go from the socket straight to the hashing thread
    one_write.install()  # a small answer's head and body in one socket write
    return hc


async def _serve(cfg: Config, svc: Services, worker: WorkerSpec | None, task_status: trio.TaskStatus[ServiceHandle]) -> None:
    """A whole engine: the primary (or the only process), or a PostgreSQL worker (whose
    actor messages go to the primary's actors, see :mod:`engine.workers`)."""
    await _bootstrap_admin(svc)
    stop = trio.Event()
    listener = workers = link = None
    if worker is not None and worker.link_fd is not None:
        link = ActorLink(trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=worker.link_fd))))
        svc.actors.remote = link
    if worker is None and cfg.http.workers > 1:
        listener = listening_socket(cfg)
        workers = Workers.start(cfg, listener, None if svc.metrics is None else svc.metrics.process_exited)
    listen_fd = worker.listen_fd if worker is not None else None if listener is None else listener.fileno()
    try:
        async with svc.actors.running(cfg.http.graceful_timeout_seconds), trio.open_nursery() as linked:
            if workers is not None:
                for worker_link in workers.links:
                    linked.start_soon(serve_link, trio.SocketStream(trio.socket.from_stdlib_socket(worker_link)), svc.actors)
                linked.start_soon(workers.watch)
            if link is not None:
                linked.start_soon(_follow_link, link, stop)
            # Recovery before traffic: unfinished jobs run again, overdue reviews expire.
            await svc.pipeline.resume_unfinished()
            await svc.imports.resume_pending()
            svc.actors.start_soon(svc.review_clock.run)
            svc.actors.start_soon(svc.settlement.run)
            svc.actors.start_soon(svc.imports.watch_arrivals)
            svc.actors.start_soon(svc.deliveries.run)
            if svc.leases.shared:
                svc.actors.start_soon(_scan, svc)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_maintenance, svc)
                await nursery.start(svc.recorder.run)
                nursery.start_soon(svc.vectors.run)
                if workers is not None:
                    nursery.start_soon(_terminate_on, stop, workers)
                await _start_http(cfg, svc, listen_fd, stop, nursery, task_status)
            if workers is not None:  # HTTP drained here; the workers' forwarded messages still get answers
                await workers.wait(cfg.http.graceful_timeout_seconds + 5)
            linked.cancel_scope.cancel()
    finally:
        if workers is not None:
            workers.terminate()
            with trio.CancelScope(shield=True):
                await workers.wait(0)
        if listener is not None:
            listener.close()


async def _follow_link(link: ActorLink, stop: trio.Event) -> None:
    await link.run()
    stop.set()  # the primary is gone: drain and stop


async def _terminate_on(stop: trio.Event, workers: Workers) -> None:
    await stop.wait()
    workers.terminate()


async def _serve_forwarding(cfg: Config, svc: Services, worker: WorkerSpec, task_status: trio.TaskStatus[ServiceHandle]) -> None:
    """A worker of the embedded engine: HTTP only, every actor message forwarded to the primary."""
    assert worker.link_fd is not None
    stop = trio.Event()
    link = ActorLink(trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=worker.link_fd))))
    svc.actors.remote = link
    async with trio.open_nursery() as outer:

        async def follow_link() -> None:
            await link.run()
            stop.set()  # the primary is gone: drain and stop

        outer.start_soon(follow_link)
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.recorder.run)
            nursery.start_soon(svc.vectors.run)
            await _start_http(cfg, svc, worker.listen_fd, stop, nursery, task_status)
        outer.cancel_scope.cancel()


async def _start_http(
    cfg: Config, svc: Services, listen_fd: int | None, stop: trio.Event, nursery: trio.Nursery,
    task_status: trio.TaskStatus[ServiceHandle],
) -> None:
    """Serve HTTP in ``nursery`` until ``stop``; once drained, cancel the nursery."""
    hc = _hypercorn_config(cfg, listen_fd)
    app = BodyGuard(HotRoutes(svc, create_asgi(svc, create_app(svc))))  # every response finishes, read body or not

    async def serve_http(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await hypercorn.trio.serve(app, hc,  # type: ignore[arg-type]  # plain ASGI callable
                                   shutdown_trigger=stop.wait, task_status=task_status, mode="asgi")
        log.info("http_drained")
        nursery.cancel_scope.cancel()

    binds = await nursery.start(serve_http)
    if svc.metrics is not None:
        nursery.start_soon(svc.metrics.keep_levels, svc)
    if cfg.metrics_where == "separate" and listen_fd is None:  # the primary (or only) process serves it
        binds += await nursery.start(_serve_metrics, cfg, svc, stop)
    elif cfg.metrics.enabled and cfg.metrics_where == "off":
        log.info("metrics_not_served", reason="http.host is not loopback and metrics.bind is empty")
    log.info("service_started", binds=binds, public_url=cfg.public_url, data_dir=str(cfg.data_dir), pid=os.getpid(),
             metrics=cfg.metrics_where)
    task_status.started(ServiceHandle(cfg.public_url, svc, stop))


async def _serve_metrics(cfg: Config, svc: Services, stop: trio.Event, *,
                         task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """``metrics.bind``: a listener of its own serving ``GET /metrics`` only."""
    hc = HypercornConfig()
    hc.bind = [cfg.metrics.bind]
    hc.accesslog = None
    hc.errorlog = None
    hc.graceful_timeout = 1
    await hypercorn.trio.serve(metrics_asgi(svc), hc,  # type: ignore[arg-type]  # plain ASGI callable
                               shutdown_trigger=stop.wait, task_status=task_status, mode="asgi")


async def serve_until_signalled(cfg: Config) -> None:
    """``ipto serve``: run the service; SIGINT or SIGTERM starts the orderly stop.

    Signals keep being read until the service is down, so a second Ctrl-C during the
    drain is logged instead of escaping as KeyboardInterrupt."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def service(*, task_status: trio.TaskStatus[ServiceHandle] = trio.TASK_STATUS_IGNORED) -> None:
                await run_service(cfg, task_status=task_status)
                nursery.cancel_scope.cancel()

            handle: ServiceHandle = await nursery.start(service)
            async for signum in signals:
                log.info("shutdown_requested", signal=signal.Signals(signum).name)
                handle.stop()
