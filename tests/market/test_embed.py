"""The numpy query embedder gives the pipeline's (sentence-transformers) embeddings."""

from __future__ import annotations

import numpy as np

from engine.market.embed import query_embedder
from engine.pipeline.embeddings import load_embedder

TEXTS = ["acme invoice", "Invoice 0425 from Globex Corporation. Total due: 1,234.00 EUR.", "café naïve résumé", "x", "a " * 400]


def test_same_vectors_as_sentence_transformers():
    ours = np.stack([query_embedder().embed(t) for t in TEXTS])
    reference = load_embedder().embed(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == reference.shape == (len(TEXTS), 384)
    assert np.all((ours * reference).sum(axis=1) > 0.9999)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
