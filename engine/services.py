"""The service's parts, built once at start and handed to the HTTP app explicitly.

The same object is the context every actor message is applied with. The blob store is
the one ``blobs.backend`` names: local files (the default, built in place) or S3, whose
client lives as long as :meth:`Services.open`'s block.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine.actors.leases import Leases
from engine.actors.review_clock import ReviewClock
from engine.actors.supervisor import Supervisor
from engine.config import Config, ConfigError
from engine.csrf import CsrfTokens
from engine.datasets import Datasets
from engine.idempotency import Idempotency
from engine.identity import Identity
from engine.ids import utcnow
from engine.imports import Imports
from engine.market.access import Accesses
from engine.market.activity import Activity
from engine.market.analytics import Analytics
from engine.market.discovery import Discovery
from engine.market.disputes import Disputes
from engine.market.payouts import Payouts
from engine.market.recorder import Recorder
from engine.market.search import Search
from engine.market.settlement import SettlementClock
from engine.market.vectors import VectorCache
from engine.metrics import Metrics, MetricsSink, shared_dir_for
from engine.objects import Objects
from engine.offload import Offload, to_thread
from engine.pagination import CursorSeal
from engine.pipeline.runner import Pipeline
from engine.review import Review
from engine.signing import Signer
from engine.store.base import Store
from engine.store.blobs.base import BlobStore
from engine.store.blobs.local import LocalBlobStore
from engine.webhooks.endpoints import Webhooks
from engine.webhooks.keys import Sealer
from engine.webhooks.process import DeliveryProcess, delivery_worker
from engine.webhooks.worker import DeliveryWorker


@dataclass(frozen=True)
class Services:
    cfg: Config
    store: Store
    identity: Identity
    datasets: Datasets
    idempotency: Idempotency
    signer: Signer
    blobs: BlobStore
    objects: Objects
    actors: Supervisor
    pipeline: Pipeline
    review: Review
    review_clock: ReviewClock
    imports: Imports
    now: Callable[[], datetime]
    leases: Leases
    csrf: CsrfTokens
    cursors: CursorSeal
    discovery: Discovery
    recorder: Recorder
    vectors: VectorCache
    search: Search
    accesses: Accesses
    activity: Activity
    disputes: Disputes
    payouts: Payouts
    settlement: SettlementClock
    analytics: Analytics
    webhooks: Webhooks
    deliveries: DeliveryWorker | DeliveryProcess  # ``webhooks.own_process``: the handle on the delivery process
    metrics: Metrics | None = None  # None: metrics are off (``Config.metrics_where``)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, cfg: Config, store: Store, secret: bytes, now: Callable[[], datetime] = utcnow, offload: Offload = to_thread
    ) -> AsyncIterator[Services]:
        """The services on the configured blob store, for the block. S3 needs
        ``trio_asyncio.open_loop()`` around it."""
        if cfg.blobs.backend == "s3":
            from engine.store.blobs.s3 import S3BlobStore  # aiobotocore is loaded only where it is used

            async with S3BlobStore.open(cfg.blobs, cfg.data_dir / "tmp", now, offload) as s3:
                yield cls.build(cfg, store, secret, now, offload, blobs=s3)
        else:
            yield cls.build(cfg, store, secret, now, offload)

    @classmethod
    def build(
        cls, cfg: Config, store: Store, secret: bytes, now: Callable[[], datetime] = utcnow, offload: Offload = to_thread,
        blobs: BlobStore | None = None,
    ) -> Services:
        """The services on ``blobs``, or on a local blob store in the data dir."""
        signer = Signer(secret, cfg.public_url)
        if blobs is None:
            if cfg.blobs.backend != "local":
                raise ConfigError(f"blobs.backend = {cfg.blobs.backend} needs its client: start with Services.open")
            blobs = LocalBlobStore(cfg.data_dir / "blobs", signer, offload)
        leases = Leases(store, cfg.actors.lease_ttl_seconds)
        shared = leases if leases.shared else None  # several processes on one store
        actors = Supervisor(cfg.actors, leases=shared, flush=store.flush)
        datasets = Datasets(store, actors, now)
        objects = Objects(store, blobs, datasets, cfg.uploads, cfg.review.window_seconds, actors, now)
        pipeline = Pipeline(store, blobs, actors, cfg.pipeline, now, leases)
        review = Review(store, objects, actors, pipeline.start, now, cfg.review.preview_max_bytes)
        clock = ReviewClock(store, actors, now, shared, cfg.actors.scan_seconds if shared else math.inf)
        objects.on_staged = clock.wake
        identity = Identity(store, cfg.auth)
        identity.now = now
        discovery = Discovery(store, now, cfg.search.discovery_cache_entries)
        recorder = Recorder(store, cfg.search.record_flush_seconds)
        settlement = SettlementClock(store, cfg.billing.hold_seconds, now, shared,
                                     cfg.billing.settle_scan_seconds if shared else math.inf)
        vectors = VectorCache(store, ann_min_chunks=cfg.search.ann_min_chunks)
        sealer = Sealer(secret)
        hooks_cfg = cfg.webhooks
        deliveries = DeliveryProcess(cfg) if hooks_cfg.own_process else delivery_worker(cfg, store, sealer, now)
        svc = cls(
            cfg=cfg, store=store, identity=identity, datasets=datasets,
            cursors=CursorSeal(secret),
            idempotency=Idempotency(store, cfg.idempotency, secret, now), signer=signer, blobs=blobs,
            objects=objects, actors=actors, pipeline=pipeline, review=review, review_clock=clock,
            imports=Imports(store, blobs, actors, datasets, cfg.imports, cfg.uploads.url_ttl_seconds, now, leases), now=now,
            leases=leases, csrf=CsrfTokens(secret), discovery=discovery, recorder=recorder, vectors=vectors,
            search=Search(store, discovery, recorder, vectors, cfg.search, now),
            accesses=Accesses(store, discovery, recorder, blobs, cfg.billing.platform_fee_bps, cfg.uploads.url_ttl_seconds, now),
            activity=Activity(store), disputes=Disputes(store, cfg.billing.hold_seconds, now, settlement.wake),
            payouts=Payouts(store, cfg.billing.hold_seconds, now), settlement=settlement, analytics=Analytics(store),
            webhooks=Webhooks(store, sealer, hooks_cfg, now, deliveries.wake), deliveries=deliveries,
            metrics=None if cfg.metrics_where == "off" else Metrics(_metric_files(cfg)),
        )
        svc.accesses.on_charged = settlement.wake_for
        actors.context = svc
        if svc.metrics is not None:
            sink: MetricsSink = svc.metrics
            objects.metrics = pipeline.metrics = svc.imports.metrics = svc.deliveries.metrics = sink
        return svc


def _metric_files(cfg: Config) -> Path | None:
    """Where this process keeps its metrics if several processes record (``ipto serve``
    empties it at start; services built on their own, e.g. by tests, may find it missing)."""
    shared = shared_dir_for(cfg)
    if shared is not None:
        shared.mkdir(mode=0o700, parents=True, exist_ok=True)
    return shared
