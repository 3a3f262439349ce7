"""The engine's Prometheus metrics (``GET /metrics``), on a registry of its own.

Two kinds:

* **events**, counted where they happen: HTTP requests (by method, route template and
  status) and their latency, bytes of confirmed uploads and the uploads confirmed, pipeline
  stage seconds, import records accepted and rejected. The parts that record them hold a
  :class:`Metrics` (or :data:`NO_METRICS`, whose methods do nothing, when metrics are off).
* **levels**, read when scraped (:meth:`Metrics.refresh`): live actors and their inbox
  depth, queued/running jobs and imports and the review queue (counted in the store),
  and the leases this process holds, by kind (``dataset``, ``job``, ``imports``, ...).

One registry per service (not prometheus-client's global one): several engines in one
process (the tests) never mix their figures. ``prometheus-client``'s metric objects are
thread-safe and cheap (a lock and an add); a route's label set is looked up once and
kept (:meth:`Metrics.observe_request`).

**Several processes** (``ipto serve --workers N``): a scrape reaches whichever process
accepts the connection, so each must report the whole engine. Every process then keeps
its figures in prometheus-client's *multiprocess mode*: each value lives in a small
memory-mapped file of its process under ``<data dir>/metrics/`` (the primary empties the
folder when it starts), and a scrape, in any process, sums the files of all
(:class:`~prometheus_client.multiprocess.MultiProcessCollector`). Counters and histograms
add up across processes (a dead worker's counts stay in the totals); the per-process
levels are summed (live actors, inbox depth, pipeline runs), the fullest inbox is the
largest, leases held keep one series per process (a ``pid`` label), and the store-wide
counts (jobs, imports, review queue) are the latest any process read. Per-process levels
are refreshed every :data:`LEVELS_SECONDS` by each process, the scraping one's at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = ["CONTENT_TYPE", "Metrics", "NO_METRICS", "NullMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Latency buckets (seconds): the control plane answers in ~1 ms; uploads and searches run long.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
LEVELS_SECONDS = 2.0  # several processes: how often each writes its own levels for the others' scrapes


def shared_dir_for(cfg: Any) -> Path | None:
    """Where this engine's processes keep their metric files, or None when there is one
    process that records (metrics off, or one process with no delivery process beside it)."""
    if cfg.metrics_where == "off" or (cfg.http.workers <= 1 and not cfg.webhooks.own_process):
        return None
    return multiprocess_dir(cfg.data_dir)


def multiprocess_dir(data_dir: Path) -> Path:
    """Where the processes of one engine keep their metric files."""
    return data_dir / "metrics"


def reset_multiprocess_dir(path: Path) -> None:
    """The primary, before any process records: the files of an earlier run go."""
    path.mkdir(mode=0o700, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()


def _record_in_files(path: Path) -> None:
    """Make every metric value this process creates from now on live in ``path``'s files
    (prometheus-client picks its value class once, at import, from this variable)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


class MetricsSink(Protocol):
    """What the engine's parts call; :class:`Metrics` records, :class:`NullMetrics` does not."""

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None: ...

    def upload_confirmed(self, size_bytes: int) -> None: ...

    def stage_finished(self, stage: str, outcome: str, seconds: float) -> None: ...

    def import_finished(self, accepted: int, rejected: int) -> None: ...

    def webhook_delivered(self, outcome: str) -> None: ...


class NullMetrics:
    """Metrics off: every call is a no-op."""

    enabled = False

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        return None

    def upload_confirmed(self, size_bytes: int) -> None:
        return None

    def stage_finished(self, stage: str, outcome: str, seconds: float) -> None:
        return None

    def import_finished(self, accepted: int, rejected: int) -> None:
        return None

    def webhook_delivered(self, outcome: str) -> None:
        return None


NO_METRICS = NullMetrics()


class Metrics:
    """The engine's metrics on their own :class:`CollectorRegistry`."""

    enabled = True

    def __init__(self, shared_dir: Path | None = None) -> None:
        """``shared_dir``: this process is one of several (see the module docstring)."""
        self.shared_dir = shared_dir
        if shared_dir is not None:
            _record_in_files(shared_dir)
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("ipto_http_requests", "HTTP requests answered, by method, route template and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("ipto_http_request_duration_seconds", "HTTP request latency, by method and route template",
                                 ["method", "route"], buckets=REQUEST_BUCKETS, registry=r)
        self.upload_bytes = Counter("ipto_upload_bytes", "Bytes of uploads confirmed (verified size)", registry=r)
        self.uploads = Counter("ipto_uploads_confirmed", "Uploads confirmed (single-part and multipart)", registry=r)
        self.stage_seconds = Histogram("ipto_pipeline_stage_seconds", "Seconds a pipeline stage ran, by stage and outcome",
                                       ["stage", "outcome"], buckets=STAGE_BUCKETS, registry=r)
        self.import_records = Counter("ipto_import_records", "Records of finished imports, by outcome (accepted, rejected)",
                                      ["outcome"], registry=r)
        self.webhook_deliveries = Counter("ipto_webhook_deliveries", "Webhook delivery attempts, by outcome",
                                          ["outcome"], registry=r)
        self.actors = Gauge("ipto_actors_live", "Dataset actors alive in the engine's processes", registry=r,
                            multiprocess_mode="livesum")
        self.inbox = Gauge("ipto_actor_inbox_depth", "Messages waiting in the dataset actors' inboxes", registry=r,
                           multiprocess_mode="livesum")
        self.inbox_max = Gauge("ipto_actor_inbox_depth_max", "The fullest dataset actor inbox", registry=r,
                               multiprocess_mode="livemax")
        self.jobs = Gauge("ipto_jobs", "Processing jobs not finished, by status (queued, running), store-wide",
                          ["status"], registry=r, multiprocess_mode="livemostrecent")
        self.imports = Gauge("ipto_imports", "Record imports not finished, by status (queued, processing), store-wide",
                             ["status"], registry=r, multiprocess_mode="livemostrecent")
        self.review_queue = Gauge("ipto_review_queue", "Objects waiting for review, by review state, store-wide",
                                  ["review_state"], registry=r, multiprocess_mode="livemostrecent")
        self.leases = Gauge("ipto_leases_held", "Leases a process holds, by kind (dataset, job, imports, ...); "
                            "several processes: one series per process (pid)", ["kind"], registry=r, multiprocess_mode="liveall")
        self.pipeline_running = Gauge("ipto_pipeline_runs", "Pipeline runs in progress", registry=r,
                                      multiprocess_mode="livesum")
        self._routes: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.import_records.labels("accepted")
        self.import_records.labels("rejected")

    # -- events -------------------------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._routes.get(key)
        if children is None:
            children = self._routes[key] = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)

    def upload_confirmed(self, size_bytes: int) -> None:
        self.uploads.inc()
        self.upload_bytes.inc(size_bytes)

    def stage_finished(self, stage: str, outcome: str, seconds: float) -> None:
        self.stage_seconds.labels(stage, outcome).observe(seconds)

    def import_finished(self, accepted: int, rejected: int) -> None:
        self.import_records.labels("accepted").inc(accepted)
        self.import_records.labels("rejected").inc(rejected)

    def webhook_delivered(self, outcome: str) -> None:
        self.webhook_deliveries.labels(outcome).inc()

    # -- levels -------------------------------------------------------------------------
    async def refresh(self, svc: Any) -> None:
        """Read the levels from the running service (``engine.services.Services``)."""
        self.refresh_own(svc)
        counts = await svc.store.operational_counts()
        for gauge, key, states in ((self.jobs, "jobs", ("queued", "running")),
                                   (self.imports, "imports", ("queued", "processing")),
                                   (self.review_queue, "review", ("staged", "under_review"))):
            for state in states:
                gauge.labels(state).set(counts.get(key, {}).get(state, 0))

    def refresh_own(self, svc: Any) -> None:
        """The levels of this process: its actors, pipeline runs and leases."""
        live, depth, fullest = svc.actors.inbox_levels()
        self.actors.set(live)
        self.inbox.set(depth)
        self.inbox_max.set(fullest)
        self.pipeline_running.set(svc.pipeline.running)
        kinds: dict[str, int] = {}
        for name in svc.leases.held():
            kind = name.partition(":")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        for kind in ("dataset", "job", "imports", "review-clock", *kinds):
            self.leases.labels(kind).set(kinds.get(kind, 0))

    async def keep_levels(self, svc: Any) -> None:
        """Several processes: write this process's levels every :data:`LEVELS_SECONDS`, so
        a scrape answered by another process sees them (one process: nothing to do)."""
        if self.shared_dir is None:
            return
        while True:
            self.refresh_own(svc)
            await trio.sleep(LEVELS_SECONDS)

    def render(self) -> bytes:
        """The registry in Prometheus's text format (several processes: all of them)."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        every = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(every, path=str(self.shared_dir))
        return generate_latest(every)

    def process_exited(self, pid: int | None = None) -> None:
        """A process of the engine is gone: its levels leave the figures (its counts stay)."""
        if self.shared_dir is not None:
            mark_process_dead(pid or os.getpid(), str(self.shared_dir))
