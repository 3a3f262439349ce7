"""The service's parts, built once at start and handed to the HTTP app explicitly.

The same object is the context every actor message is applied with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from engine.actors.review_clock import ReviewClock
from engine.actors.supervisor import Supervisor
from engine.config import Config, ConfigError
from engine.datasets import Datasets
from engine.idempotency import Idempotency
from engine.identity import Identity
from engine.ids import utcnow
from engine.imports import Imports
from engine.objects import Objects
from engine.offload import Offload, to_thread
from engine.pipeline.runner import Pipeline
from engine.review import Review
from engine.signing import Signer
from engine.store.base import Store
from engine.store.blobs import LocalBlobStore


@dataclass(frozen=True)
class Services:
    cfg: Config
    store: Store
    identity: Identity
    datasets: Datasets
    idempotency: Idempotency
    signer: Signer
    blobs: LocalBlobStore
    objects: Objects
    actors: Supervisor
    pipeline: Pipeline
    review: Review
    review_clock: ReviewClock
    imports: Imports
    now: Callable[[], datetime]

    @classmethod
    def build(
        cls, cfg: Config, store: Store, secret: bytes, now: Callable[[], datetime] = utcnow, offload: Offload = to_thread
    ) -> Services:
        if cfg.blobs.backend != "local":
            raise ConfigError("blobs.backend: the s3 backend is not available in this build yet")
        signer = Signer(secret, cfg.public_url)
        blobs = LocalBlobStore(cfg.data_dir / "blobs", signer, offload)
        actors = Supervisor(cfg.actors)
        datasets = Datasets(store, actors, now)
        objects = Objects(store, blobs, datasets, cfg.uploads, cfg.review.window_seconds, actors, now)
        pipeline = Pipeline(store, blobs, actors, cfg.pipeline, now)
        review = Review(store, objects, actors, pipeline.start, now)
        clock = ReviewClock(store, actors, now)
        objects.on_staged = clock.wake
        identity = Identity(store, cfg.auth)
        identity.now = now
        svc = cls(
            cfg=cfg, store=store, identity=identity, datasets=datasets,
            idempotency=Idempotency(store, cfg.idempotency, secret, now), signer=signer, blobs=blobs,
            objects=objects, actors=actors, pipeline=pipeline, review=review, review_clock=clock,
            imports=Imports(store, blobs, actors, datasets, cfg.imports, cfg.uploads.url_ttl_seconds, now), now=now,
        )
        actors.context = svc
        return svc
