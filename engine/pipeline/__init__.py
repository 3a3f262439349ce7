"""The processing pipeline's synchronous stage work, run by its callers on worker threads.

- :mod:`engine.pipeline.stages`: ``normalize`` (sniff and check the type), ``extract``
  (text, or OCR blocks for images), ``chunk_text`` and ``keywords``.
- :mod:`engine.pipeline.embeddings`: ``load_embedder`` and the optional MiniLM model.

Nothing here is async and nothing heavy is imported until it is used.
"""

from engine.pipeline.embeddings import Embedder, load_embedder
from engine.pipeline.stages import Extracted, StageRejected, chunk_text, extract, keywords, normalize

__all__ = ["Embedder", "Extracted", "StageRejected", "chunk_text", "extract", "keywords", "load_embedder", "normalize"]
