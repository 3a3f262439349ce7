"""The service's parts, built once at start and handed to the HTTP app explicitly."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import Config
from engine.datasets import Datasets
from engine.idempotency import Idempotency
from engine.identity import Identity
from engine.store.base import Store


@dataclass(frozen=True)
class Services:
    cfg: Config
    store: Store
    identity: Identity
    datasets: Datasets
    idempotency: Idempotency

    @classmethod
    def build(cls, cfg: Config, store: Store, secret: bytes) -> Services:
        return cls(
            cfg=cfg,
            store=store,
            identity=Identity(store, cfg.auth),
            datasets=Datasets(store),
            idempotency=Idempotency(store, cfg.idempotency, secret),
        )
