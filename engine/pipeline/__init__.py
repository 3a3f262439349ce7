"""The processing pipeline's synchronous stage work, run by its callers on worker threads.

- :mod:`engine.pipeline.stages`: ``normalize`` (sniff and check the type), ``extract``
  (text, and OCR blocks for images and scanned PDF pages), ``chunk_text`` and ``keywords``.
- :mod:`engine.pipeline.scanned`: images and PDF pages without a text layer (PDFium), read by OCR.
- :mod:`engine.pipeline.ocr`: the OCR engines (RapidOCR, the default; Tesseract where installed).
- :mod:`engine.pipeline.embeddings`: ``load_embedder`` and the optional MiniLM model.

Nothing here is async and nothing heavy is imported until it is used.
"""

from engine.pipeline.embeddings import Embedder, load_embedder
from engine.pipeline.stages import Extracted, StageRejected, chunk_text, extract, keywords, normalize

__all__ = ["Embedder", "Extracted", "StageRejected", "chunk_text", "extract", "keywords", "load_embedder", "normalize"]
