"""Runs approved objects through ``normalizing → extracting → enriching → indexing → active``.

Heavy work (sniffing, parsing, OCR, embeddings) runs on worker threads, at most
``pipeline.workers`` at a time service-wide; every change of state (stage started,
artifacts recorded, index written, job finished or failed) is a message to the dataset's
actor, so it is serialised with everything else happening to that dataset and written to
the store before the run goes on. A stage that fails is retried with exponential backoff
up to ``pipeline.max_attempts``; input that can never work (:class:`StageRejected`) fails
at once. A run restarted after a crash begins again at the stage the store says it was
in; stages overwrite their artifacts and the index is replaced whole, so nothing a user
can see happens twice. Stages read the object as a local file (:meth:`BlobStore.object_file`:
the blob itself on the local store, a temporary download from S3) and keep their
artifacts in the blob store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import orjson
import structlog
import trio

from engine.actors.leases import Leases
from engine.actors.messages import Message
from engine.actors.supervisor import Supervisor
from engine.config import PipelineConfig
from engine.errors import ServiceUnavailable
from engine.metrics import NO_METRICS, MetricsSink
from engine.offload import cpu_bound
from engine.pipeline import stages
from engine.pipeline.embeddings import Embedder, load_embedder
from engine.pipeline.ocr import OcrOptions
from engine.store.base import Store
from engine.store.blobs.base import BlobStore
from engine.store.records import Artifacts, Job, ObjectRecord

log = structlog.get_logger(__name__)

STAGES = ("normalizing", "extracting", "enriching", "indexing")
RUN_RETRY_CAP_SECONDS = 60.0  # the longest pause before a run the store failed is tried again


# -- messages (applied by the dataset's actor) ---------------------------------------------
@dataclass(frozen=True)
class StartStage(Message):
    job_id: str
    stage: str

    async def apply(self, ctx: Any) -> tuple[Job, ObjectRecord] | None:
        return await ctx.store.start_stage(self.job_id, self.stage, ctx.pipeline.now())


@dataclass(frozen=True)
class AttemptFailed(Message):
    job_id: str
    error: str

    async def apply(self, ctx: Any) -> Job:
        return await ctx.store.stage_attempt_failed(self.job_id, self.error)


@dataclass(frozen=True)
class RecordNormalized(Message):
    object_id: str
    mime: str

    async def apply(self, ctx: Any) -> None:
        await ctx.store.record_normalized(self.object_id, self.mime)


@dataclass(frozen=True)
class RecordArtifacts(Message):
    object_id: str
    artifacts: Artifacts

    async def apply(self, ctx: Any) -> None:
        await ctx.store.record_artifacts(self.object_id, self.artifacts)


@dataclass(frozen=True)
class ReplaceIndex(Message):
    obj: ObjectRecord
    chunks: tuple[str, ...]
    vectors: tuple[bytes, ...] | None

    async def apply(self, ctx: Any) -> None:
        await ctx.store.replace_index(self.obj, self.chunks, self.vectors)


@dataclass(frozen=True)
class FinishJob(Message):
    job_id: str

    async def apply(self, ctx: Any) -> tuple[Job, ObjectRecord]:
        def next_status(current: str) -> str:
            return "active" if current in ("draft", "ingesting") else current

        return await ctx.store.finish_job(self.job_id, ctx.pipeline.now(), next_status)


@dataclass(frozen=True)
class FailJob(Message):
    job_id: str
    error: str

    async def apply(self, ctx: Any) -> Job:
        return await ctx.store.fail_job(self.job_id, self.error, ctx.pipeline.now())


def ocr_options(cfg: PipelineConfig) -> OcrOptions:
    return OcrOptions(
        engine=cfg.ocr_engine, threads=cfg.ocr_threads, tesseract_lang=cfg.ocr_tesseract_lang,
        timeout_seconds=cfg.ocr_timeout_seconds, dpi=cfg.ocr_dpi, max_page_pixels=cfg.ocr_max_page_pixels,
        max_pages=cfg.ocr_max_pages,
    )


class Pipeline:
    metrics: MetricsSink = NO_METRICS  # set by Services when metrics are on

    def __init__(
        self, store: Store, blobs: BlobStore, actors: Supervisor, cfg: PipelineConfig, now: Callable[[], datetime],
        leases: Leases | None = None,
    ) -> None:
        self.store = store
        self.leases = leases or Leases(store)
        self.blobs = blobs
        self.actors = actors
        self.cfg = cfg
        self.now = now
        self._limiter = trio.CapacityLimiter(cfg.workers)
        self._ocr = ocr_options(cfg)
        self._running: set[str] = set()
        self._embedder: Embedder | None = None
        self._embedder_lock = trio.Lock()
        self._idle = trio.Event()  # set whenever no run is in progress
        self._idle.set()

    @property
    def running(self) -> int:
        return len(self._running)

    async def wait_idle(self) -> None:
        """Return once no pipeline run is in progress (tests and benchmarks)."""
        while self._running:
            await self._idle.wait()

    def start(self, job: Job) -> bool:
        """Run ``job`` in the background unless it already runs in this process."""
        if job.id in self._running:
            return False
        self._running.add(job.id)
        self._idle = trio.Event()
        self.actors.start_soon(self._run, job)
        return True

    async def resume_unfinished(self) -> int:
        """Every pipeline job the store says is queued or running runs again (on start, and
        on every scan where several processes share the store: a dead one's jobs)."""
        jobs = await self.store.unfinished_jobs("pipeline")
        started = sum(self.start(job) for job in jobs)
        if started:
            log.info("pipeline_resumed", jobs=started)
        return started

    async def embedder(self) -> Embedder:
        async with self._embedder_lock:
            if self._embedder is None:
                self._embedder = await trio.to_thread.run_sync(load_embedder)
                log.info("embedder_loaded", available=self._embedder.available, reason=self._embedder.reason)
        return self._embedder

    async def _run(self, job: Job) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(dataset_id=job.dataset_id, job_id=job.id, object_id=job.object_id)
        try:
            failures = 0
            while True:
                try:
                    # Another process may run this job (several share the store): then it is theirs.
                    async with self.leases.hold(f"job:{job.id}", wait=False) as mine:
                        if mine:
                            await self._run_stages(job)
                    return
                except ServiceUnavailable:
                    raise
                except Exception:
                    # The store failed under the run (an outage, a value it refused): the job
                    # is as the store last recorded it. Run it again after a pause rather than
                    # let the error end the supervisor, and every dataset's actor with it.
                    failures += 1
                    log.exception("pipeline_run_failed", failures=failures)
                    await trio.sleep(min(RUN_RETRY_CAP_SECONDS, self.cfg.retry_backoff_seconds * 2 ** (failures - 1)))
        except ServiceUnavailable as exc:
            # The actor cannot take our report (failed dataset, shutting down): the job
            # stays unfinished in the store and is resumed on the next start.
            log.warning("pipeline_interrupted", error=exc.message)
        finally:
            self._running.discard(job.id)
            if not self._running:
                self._idle.set()

    async def _run_stages(self, job: Job) -> None:
        current = await self.store.get_job_any(job.id)  # the lease may follow another process's progress
        if current is None or current.status in ("succeeded", "failed"):
            return
        first = STAGES.index(current.stage) if current.stage in STAGES else 0
        for stage in STAGES[first:]:
            if not await self._stage(job, stage):
                return
        finished, obj = await self.actors.ask(job.dataset_id, FinishJob(job.id))
        log.info("pipeline_finished", status=finished.status, object_status=obj.status)

    async def _stage(self, job: Job, stage: str) -> bool:
        """Run one stage to success (True) or to a failed or abandoned job (False)."""
        while True:
            started = await self.actors.ask(job.dataset_id, StartStage(job.id, stage))
            if started is None:
                log.info("pipeline_skipped", stage=stage, reason="job finished or object no longer approved")
                return False
            _, obj = started
            began = trio.current_time()
            try:
                async with self._limiter:
                    began = trio.current_time()  # waiting for a worker is not the stage's time
                    await getattr(self, f"_{stage}")(obj)
                self.metrics.stage_finished(stage, "succeeded", trio.current_time() - began)
                return True
            except stages.StageRejected as exc:
                self.metrics.stage_finished(stage, "rejected", trio.current_time() - began)
                await self.actors.ask(job.dataset_id, FailJob(job.id, f"{stage}: {exc}"))
                log.info("pipeline_rejected", stage=stage, reason=str(exc))
                return False
            except ServiceUnavailable:
                raise
            except Exception as exc:
                self.metrics.stage_finished(stage, "error", trio.current_time() - began)
                error = f"{stage}: {type(exc).__name__}: {exc}"
                failed = await self.actors.ask(job.dataset_id, AttemptFailed(job.id, error))
                log.warning("pipeline_attempt_failed", stage=stage, attempt=failed.attempts, error=error)
                if failed.attempts >= self.cfg.max_attempts:
                    await self.actors.ask(job.dataset_id, FailJob(job.id, error))
                    return False
                await trio.sleep(self.cfg.retry_backoff_seconds * 2 ** (failed.attempts - 1))

    # -- the stages ---------------------------------------------------------------------
    async def _normalizing(self, obj: ObjectRecord) -> None:
        async with self.blobs.object_file(obj.blob_id) as path:
            mime = await cpu_bound(stages.normalize, path, obj.mime_type)
        await self.actors.ask(obj.dataset_id, RecordNormalized(obj.id, mime))

    async def _extracting(self, obj: ObjectRecord) -> None:
        mime = obj.normalized_mime_type or obj.mime_type
        async with self.blobs.object_file(obj.blob_id) as path:
            extracted = await cpu_bound(partial(stages.extract, path, mime, ocr=self._ocr))
        await self.blobs.write_artifact(obj.id, "text.txt", extracted.text.encode())
        if extracted.blocks:
            await self.blobs.write_artifact(obj.id, "ocr.json", orjson.dumps(extracted.blocks))
        meta = {"ocr_blocks": extracted.ocr_blocks, "ocr_reason": extracted.ocr_reason}
        await self.blobs.write_artifact(obj.id, "extract.json", orjson.dumps(meta))
        artifacts = Artifacts(plain_text=bool(extracted.text.strip()), ocr_blocks=extracted.ocr_blocks, chunk_embeddings=False)
        await self.actors.ask(obj.dataset_id, RecordArtifacts(obj.id, artifacts))

    async def _enriching(self, obj: ObjectRecord) -> None:
        text = (await self.blobs.read_artifact(obj.id, "text.txt")).decode()
        meta = orjson.loads(await self.blobs.read_artifact(obj.id, "extract.json"))
        chunks = await cpu_bound(stages.chunk_text, text, self.cfg.chunk_chars, self.cfg.chunk_overlap)
        words = await cpu_bound(stages.keywords, text)
        embedder = await self.embedder()
        has_vectors = embedder.available and bool(chunks)
        if has_vectors:
            import numpy as np  # only where vectors exist: numpy alone is ~13 MiB of RSS

            vectors = await cpu_bound(embedder.embed, chunks)
            await self.blobs.write_artifact(obj.id, "vectors.f32", np.asarray(vectors, dtype=np.float32).tobytes())
        doc = {"chunks": chunks, "keywords": words, "embeddings": has_vectors,
               "embeddings_reason": None if has_vectors else embedder.reason}
        await self.blobs.write_artifact(obj.id, "chunks.json", orjson.dumps(doc))
        artifacts = Artifacts(plain_text=bool(text.strip()), ocr_blocks=bool(meta["ocr_blocks"]), chunk_embeddings=has_vectors,
                              keywords=tuple(words))
        await self.actors.ask(obj.dataset_id, RecordArtifacts(obj.id, artifacts))

    async def _indexing(self, obj: ObjectRecord) -> None:
        doc = orjson.loads(await self.blobs.read_artifact(obj.id, "chunks.json"))
        chunks = tuple(doc["chunks"])
        vectors: tuple[bytes, ...] | None = None
        if doc["embeddings"]:
            import numpy as np

            raw = np.frombuffer(await self.blobs.read_artifact(obj.id, "vectors.f32"), dtype=np.float32)
            vectors = tuple(row.tobytes() for row in raw.reshape(len(chunks), -1))
        await self.actors.ask(obj.dataset_id, ReplaceIndex(obj, chunks, vectors))
