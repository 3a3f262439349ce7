"""The service's parts, built once at start and handed to the HTTP app explicitly."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import Config, ConfigError
from engine.datasets import Datasets
from engine.idempotency import Idempotency
from engine.identity import Identity
from engine.objects import Objects
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

    @classmethod
    def build(cls, cfg: Config, store: Store, secret: bytes) -> Services:
        if cfg.blobs.backend != "local":
            raise ConfigError("blobs.backend: the s3 backend is not available in this build yet")
        signer = Signer(secret, cfg.public_url)
        blobs = LocalBlobStore(cfg.data_dir / "blobs", signer)
        datasets = Datasets(store)
        return cls(
            cfg=cfg,
            store=store,
            identity=Identity(store, cfg.auth),
            datasets=datasets,
            idempotency=Idempotency(store, cfg.idempotency, secret),
            signer=signer,
            blobs=blobs,
            objects=Objects(store, blobs, datasets, cfg.uploads, cfg.review.window_seconds),
        )
