"""Optical character recognition: lines of text with a box and a confidence each.

Two engines behind one small interface (:class:`OcrEngine`), chosen by
``pipeline.ocr_engine``:

- ``rapidocr`` (the default): RapidOCR on ONNX Runtime (``rapidocr-onnxruntime``, from
  PyPI). Its PP-OCRv4 detection, direction and recognition models ship inside the wheel,
  so it needs no system package and never downloads anything. It runs in this process.
- ``tesseract``: the ``tesseract`` executable where it is installed (e.g. Debian's
  ``tesseract-ocr``), run once per image with its TSV output. Faster on dense pages and
  the better choice for scripts PP-OCRv4 does not know; optional.

``bench/ocr.py`` compares the two on the suite's images (README "Behaviour worth knowing").

Every line comes back as ``{"text", "confidence" (0..1), "bbox" ([left, top, right,
bottom] in pixels of the image given), "page"}``. An engine that cannot run here is
returned unavailable with a reason, never faked. Engines are safe to call from several
threads at once; heavy imports happen on first use.
"""

from __future__ import annotations

import io
import os
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Protocol

ENGINES = ("rapidocr", "tesseract")


@dataclass(frozen=True)
class OcrOptions:
    """How images and scanned pages are read (from ``[pipeline]`` ocr_* keys)."""

    engine: str = "rapidocr"
    threads: int = 1  # ONNX Runtime threads per recognition (pipeline.workers run side by side)
    tesseract_lang: str = "eng"
    timeout_seconds: float = 120.0  # one tesseract run
    dpi: int = 300  # scanned PDF pages are rendered at this resolution...
    max_page_pixels: int = 25_000_000  # ...or less, so that one page holds at most this many pixels
    max_pages: int = 50  # pages (TIFF frames, scanned PDF pages) read per object


class OcrEngine(Protocol):
    name: str
    available: bool
    reason: str | None

    def read(self, image: Any, page: int) -> list[dict[str, Any]]:
        """The lines of an RGB ``PIL.Image``, top to bottom; raise TimeoutError if stuck."""
        ...


class Unavailable:
    """An engine that cannot run here; says why."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.available: bool = False
        self.reason: str | None = reason

    def read(self, image: Any, page: int) -> list[dict[str, Any]]:
        raise RuntimeError(f"OCR unavailable: {self.reason}")


class RapidOcr:
    """RapidOCR (PP-OCRv4 on ONNX Runtime), models from the installed wheel.

    A RapidOCR instance keeps per-call state (its detector's pre-processing), so each call
    borrows one from a pool; the pool grows to the number of calls running at once, which
    the pipeline bounds (``pipeline.workers``)."""

    name = "rapidocr"

    def __init__(self, threads: int) -> None:
        from rapidocr_onnxruntime import RapidOCR  # noqa: F401  (fails here, not mid-job, when absent)

        self.available: bool = True
        self.reason: str | None = None
        self._threads = threads
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pool.put(self._new())

    def _new(self) -> Any:
        from rapidocr_onnxruntime import RapidOCR

        return RapidOCR(
            intra_op_num_threads=self._threads, inter_op_num_threads=1,
            # Latin text on whole pages (measured on rendered pages, see bench/ocr.py):
            # detect at most 1280 px on the longer side (the wheel's default scales the
            # *shorter* side up to 736: slow and memory-hungry on small images); grow each
            # line's box a little more than the default 1.6 (PP-OCRv4 drops the spaces
            # between words of tightly cropped Latin lines); never shrink the page before
            # recognition (lines below ~24 px high lose their spaces too).
            det_limit_type="max", det_limit_side_len=1280, det_unclip_ratio=2.0, max_side_len=100_000,
        )  # fmt: skip

    def read(self, image: Any, page: int) -> list[dict[str, Any]]:
        try:
            engine = self._pool.get_nowait()
        except queue.Empty:
            engine = self._new()
        try:
            # No per-line direction classifier: on Latin pages it flipped whole lines by 180°
            # and lost them (a dense invoice page: 40 lines read of 40 without it, 32 with it).
            result, _ = engine(image, use_cls=False)
        finally:
            self._pool.put(engine)
        lines = []
        for points, text, score in result or ():
            text = " ".join(str(text).split())
            if not text:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            bbox = [int(min(xs)), int(min(ys)), int(round(max(xs))), int(round(max(ys)))]
            lines.append({"text": text, "confidence": round(float(score), 4), "bbox": bbox, "page": page})
        return lines


class Tesseract:
    """The ``tesseract`` executable, one run per image (TSV out), one OpenMP thread each."""

    name = "tesseract"

    def __init__(self, exe: str, lang: str, timeout: float) -> None:
        self.available: bool = True
        self.reason: str | None = None
        self._exe, self._lang, self._timeout = exe, lang, timeout

    def read(self, image: Any, page: int) -> list[dict[str, Any]]:
        png = io.BytesIO()
        image.save(png, format="PNG")
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # several runs go side by side on worker threads
        try:
            proc = subprocess.run(
                [self._exe, "stdin", "stdout", "-l", self._lang, "tsv"],
                input=png.getvalue(), capture_output=True, timeout=self._timeout, env=env, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"tesseract took longer than {self._timeout}s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"tesseract failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")
        return tsv_lines(proc.stdout.decode("utf-8", errors="replace"), page)


def tsv_lines(tsv: str, page: int) -> list[dict[str, Any]]:
    """Group Tesseract's word rows into lines with mean confidence and a bounding box."""
    lines: dict[tuple[str, str, str], list[list[str]]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) == 12 and cols[11].strip() and float(cols[10]) >= 0:
            lines.setdefault((cols[2], cols[3], cols[4]), []).append(cols)
    blocks = []
    for words in lines.values():
        left = min(int(w[6]) for w in words)
        top = min(int(w[7]) for w in words)
        right = max(int(w[6]) + int(w[8]) for w in words)
        bottom = max(int(w[7]) + int(w[9]) for w in words)
        confidence = sum(float(w[10]) for w in words) / len(words) / 100
        text = " ".join(w[11].strip() for w in words)
        blocks.append({"text": text, "confidence": round(confidence, 4), "bbox": [left, top, right, bottom], "page": page})
    return blocks


_lock = threading.Lock()
_engines: dict[tuple[str, int, str, float], OcrEngine] = {}


def load_ocr(options: OcrOptions) -> OcrEngine:
    """The process-wide engine for ``options``, built on first use (RapidOCR: ~0.2 s);
    unavailable, with the reason, when it cannot run here. Never raises."""
    key = (options.engine, options.threads, options.tesseract_lang, options.timeout_seconds)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _build(options)
            if engine.available:  # an engine missing now may be installed later: look again then
                _engines[key] = engine
        return engine


def _build(options: OcrOptions) -> OcrEngine:
    if options.engine == "tesseract":
        exe = shutil.which("tesseract")
        if exe is None:
            return Unavailable("tesseract", "tesseract not installed")
        return Tesseract(exe, options.tesseract_lang, options.timeout_seconds)
    if options.engine != "rapidocr":
        return Unavailable(options.engine, f"unknown OCR engine {options.engine!r}")
    try:
        return RapidOcr(options.threads)
    except ImportError as exc:
        return Unavailable("rapidocr", f"rapidocr-onnxruntime is not installed ({exc})")
