"""Text out of pictures: images, and PDF pages that have no text layer (scans).

PDF pages are read with pypdf first; a page whose text layer holds no letter or digit
(a scan, or a page of vector drawings of glyphs) is rendered with PDFium (``pypdfium2``,
a wheel) and read by OCR, so a mixed PDF gets both, in page order. Images are read frame
by frame (every TIFF page, else the first frame).

Memory stays bounded per object: one page or frame is decoded at a time and dropped
before the next; a page is rendered at ``ocr.dpi`` but never with more than
``ocr.max_page_pixels`` pixels (images larger than that are scaled down before OCR), and
at most ``ocr.max_pages`` pages or frames are read per object (the reason then says how
many were left out). PDFium is not thread-safe, so every call into it holds one
process-wide lock; the OCR itself runs outside it.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.pipeline.ocr import OcrEngine, OcrOptions, load_ocr
from engine.pipeline.stages import Extracted, StageRejected, _Capped, _errors

_pdfium_lock = threading.Lock()
_WORD = re.compile(r"[^\W_]")  # a letter or a digit, in any script


def read_image(path: Path, limit: int, options: OcrOptions) -> Extracted:
    """OCR lines of an image file (every TIFF page, up to ``options.max_pages``)."""
    engine = load_ocr(options)
    blocks: list[dict[str, Any]] = []
    out = _Capped(limit)
    with _frames(path, options) as (count, frames):
        for page, frame in enumerate(frames):
            if not engine.available:  # the first frame decoded: a corrupt file is rejected either way
                return Extracted("", False, engine.reason, [], False)
            lines = engine.read(frame, page)
            frame.close()
            blocks.extend(lines)
            if not all(out.add(line["text"] + "\n") for line in lines):
                break
    reason = None if blocks else "OCR found no text"
    if count > options.max_pages:
        reason = _left_out_note(reason, count - options.max_pages, "frames")
    return Extracted(out.text().strip(), bool(blocks), reason, blocks, out.truncated)


@contextmanager
def _frames(path: Path, options: OcrOptions) -> Iterator[tuple[int, Iterator[Any]]]:
    """``(frame count, frames)``: the image decoded one frame at a time (at most
    ``options.max_pages``), each as RGB on white within the pixel bound."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    unreadable = _errors(UnidentifiedImageError, Image.DecompressionBombError, OSError)

    def decoded(img: Any, count: int) -> Iterator[Any]:
        frames = ImageSequence.Iterator(img)
        for _ in range(min(count, options.max_pages)):
            try:
                frame = _flatten(next(frames), options.max_page_pixels)
            except StopIteration:
                return
            except unreadable as exc:
                raise StageRejected(f"corrupt or unreadable image: {exc}") from None
            yield frame  # OCR errors raised while the caller holds it are not decoding errors

    with open(path, "rb") as f:
        try:
            img = Image.open(f)
            count = getattr(img, "n_frames", 1) if img.format == "TIFF" else 1
            if img.format == "JPEG":  # decode at a reduced scale instead of shrinking afterwards
                img.draft("RGB", _fit(img.size, options.max_page_pixels))
        except unreadable as exc:
            raise StageRejected(f"corrupt or unreadable image: {exc}") from None
        with img:
            yield count, decoded(img, count)


def _fit(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    width, height = size
    if width * height <= max_pixels:
        return size
    factor = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * factor)), max(1, int(height * factor))


def _flatten(frame: Any, max_pixels: int) -> Any:
    from PIL import Image

    rgba = frame.convert("RGBA")
    if rgba.size != (target := _fit(rgba.size, max_pixels)):
        rgba = rgba.resize(target, Image.Resampling.LANCZOS)
    # Transparent pixels are black underneath: flatten on white or dark text vanishes.
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def _left_out_note(reason: str | None, count: int, what: str) -> str:
    note = f"{count} more {what} not read (pipeline.ocr_max_pages)"
    return note if reason is None else f"{reason}; {note}"


# --------------------------------------------------------------------------- PDF


def read_pdf(path: Path, limit: int, options: OcrOptions) -> Extracted:
    """The text layer of every page, and OCR lines of the pages that have none."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    out = _Capped(limit)
    blocks: list[dict[str, Any]] = []
    engine: OcrEngine | None = None
    scans = left_out = 0
    try:
        with _Renderer(path) as renderer:
            reader = PdfReader(path)
            if reader.is_encrypted and not reader.decrypt(""):
                raise StageRejected("PDF is encrypted with a password")
            for index, page in enumerate(reader.pages):  # pages are parsed one at a time
                text = (page.extract_text() or "").strip()
                if not _WORD.search(text):
                    engine = engine or load_ocr(options)
                    if not engine.available:
                        continue
                    if scans >= options.max_pages:
                        left_out += 1
                        continue
                    scans += 1
                    lines = _ocr_page(renderer, engine, index, options)
                    blocks.extend(lines)
                    text = "\n".join(line["text"] for line in lines)
                if text and not out.add(text + "\n\n"):
                    break
    except _errors(PyPdfError) as exc:
        raise StageRejected(f"corrupt PDF: {exc}") from None
    text = out.text().strip()
    reason = None
    if engine is not None and not engine.available:
        reason = f"pages without a text layer were not read: {engine.reason}"
    elif scans and not blocks:
        reason = "OCR found no text on the pages without a text layer"
    if left_out:
        reason = _left_out_note(reason, left_out, "pages without a text layer")
    return Extracted(text, bool(blocks), reason, blocks, out.truncated)


def _ocr_page(renderer: _Renderer, engine: OcrEngine, index: int, options: OcrOptions) -> list[dict[str, Any]]:
    image, dpi = renderer.render(index, options)
    try:
        lines = engine.read(image, index)
    finally:
        image.close()
    for line in lines:
        line["dpi"] = dpi  # the bbox is in pixels of the page rendered at this resolution
    return lines


class _Renderer:
    """PDFium, opened on the first page it must render; every call under the process-wide lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pdf: Any = None

    def __enter__(self) -> _Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pdf is not None:
            with _pdfium_lock:
                self._pdf.close()

    def render(self, index: int, options: OcrOptions) -> tuple[Any, int]:
        """Page ``index`` as an RGB ``PIL.Image`` and the resolution it was rendered at."""
        import pypdfium2 as pdfium

        with _pdfium_lock, _pdfium_errors():
            if self._pdf is None:
                self._pdf = pdfium.PdfDocument(str(self.path))
            page = self._pdf[index]
            try:
                width, height = page.get_size()  # points (1/72 in)
                scale = options.dpi / 72
                while math.ceil(width * scale) * math.ceil(height * scale) > options.max_page_pixels:
                    scale = min(scale * 0.995, math.sqrt(options.max_page_pixels / (width * height)))  # PDFium rounds up
                bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255))
                try:
                    image = bitmap.to_pil().convert("RGB")  # a copy: the bitmap's buffer is freed below
                finally:
                    bitmap.close()
            finally:
                page.close()
        return image, round(scale * 72)


@contextmanager
def _pdfium_errors() -> Iterator[None]:
    import pypdfium2 as pdfium

    try:
        yield
    except pdfium.PdfiumError as exc:
        raise StageRejected(f"corrupt PDF: {exc}") from None
