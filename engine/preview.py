"""What an admin sees of a staged object before deciding: its text, its pages, its picture.

A preview is built from what the bytes *are*, never from what the uploader declared: the
type is sniffed (``engine.pipeline.stages``), and a file that claims to be a PNG but
holds SVG or HTML is shown as text with the mismatch named, exactly as the pipeline would
refuse it. Nothing here ever hands a browser the original bytes of an upload:

* text (HTML, SVG, Markdown, CSV, JSON … anything that decodes as UTF-8) is returned as a
  string, which the console puts into the page as text, never as markup;
* PDFs give their page count and extracted text, DOCX files their extracted text;
* raster images are decoded and re-encoded (PNG, or JPEG when there is no transparency)
  at most :data:`IMAGE_EDGE` pixels a side, so what reaches the browser is pixels only.

Every function here blocks (file reads, pypdf, Pillow) and holds no shared state: the
caller runs it on a worker thread. Work is bounded: at most :data:`TEXT_CHARS` characters
of text, :data:`TEXT_BYTES` bytes read for plain text, :data:`IMAGE_PIXELS` pixels decoded.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass
from pathlib import Path

from engine.pipeline import stages

TEXT_CHARS = 100_000
TEXT_BYTES = 4 * TEXT_CHARS  # UTF-8 takes at most 4 bytes a character
IMAGE_EDGE = 1600
IMAGE_PIXELS = 50_000_000  # an A4 page scanned at 600 dpi is 35 M; decoding 50 M RGB pixels takes ~150 MB
RASTER_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/tiff"})


@dataclass(frozen=True)
class Preview:
    """``kind``: ``text`` | ``pdf`` | ``document`` | ``image`` | ``none`` (nothing to show)."""

    kind: str
    detected_type: str | None  # what the bytes are, when sniffing could tell
    problem: str | None  # why the pipeline would refuse the object, or why nothing is shown
    text: str | None = None
    truncated: bool = False
    page_count: int | None = None
    width: int | None = None
    height: int | None = None


def build(path: Path, declared_type: str) -> Preview:
    """The preview of the file at ``path``, uploaded as ``declared_type``."""
    try:
        stages.normalize(path, declared_type)
        problem = None
    except stages.StageRejected as exc:
        problem = str(exc)
    detected = stages.sniff_type(path)
    if detected in RASTER_TYPES:
        return _image(path, detected, problem)
    if detected == stages.PDF:
        return _pdf(path, problem)
    if detected == stages.DOCX:
        return _docx(path, problem)
    if detected is not None:
        return Preview("none", detected, problem or f"no preview for {detected}")
    return _text(path, problem)


def _text(path: Path, problem: str | None) -> Preview:
    with open(path, "rb") as f:
        head = f.read(TEXT_BYTES)
        at_eof = not f.read(1)
    decoder = codecs.getincrementaldecoder("utf-8-sig")("replace")
    text = decoder.decode(head, final=at_eof)
    controls = sum(1 for ch in text[:65536] if ord(ch) < 32 and ch not in "\t\n\r\f\v\x1b")
    if "\x00" in text[:65536] or controls > max(1, min(len(text), 65536) // 100):
        return Preview("none", "application/octet-stream", problem or "binary data of an unknown type: no preview")
    truncated = not at_eof or len(text) > TEXT_CHARS
    return Preview("text", "text/plain", problem, text=text[:TEXT_CHARS], truncated=truncated)


def _pdf(path: Path, problem: str | None) -> Preview:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    parts: list[str] = []
    left = TEXT_CHARS
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            return Preview("pdf", stages.PDF, problem or "the PDF is encrypted with a password", page_count=None)
        pages = len(reader.pages)
        for page in reader.pages:  # parsed one at a time, until the budget is spent
            if left <= 0:
                break
            piece = (page.extract_text() or "").strip()
            parts.append(piece[:left])
            left -= len(piece) + 2
    except stages.parse_errors(PyPdfError) as exc:
        return Preview("none", stages.PDF, problem or f"corrupt PDF: {exc}")
    text = "\n\n".join(p for p in parts if p)
    note = problem or (None if text else "the PDF has no text layer")
    return Preview("pdf", stages.PDF, note, text=text, truncated=left <= 0, page_count=pages)


def _docx(path: Path, problem: str | None) -> Preview:
    try:
        extracted = stages.extract(path, stages.DOCX, max_text_chars=TEXT_CHARS)
    except stages.StageRejected as exc:
        return Preview("none", stages.DOCX, problem or str(exc))
    return Preview("document", stages.DOCX, problem, text=extracted.text, truncated=extracted.truncated)


def _image(path: Path, detected: str, problem: str | None) -> Preview:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return Preview("none", detected, problem or f"corrupt or unreadable image: {exc}")
    if width * height > IMAGE_PIXELS:
        return Preview("none", detected, problem or f"the image is too large to preview ({width} × {height} pixels)", width=width, height=height)
    return Preview("image", detected, problem, width=width, height=height)


def render_image(path: Path) -> tuple[bytes, str]:
    """The image re-encoded for the browser: ``(bytes, content type)``, at most
    :data:`IMAGE_EDGE` pixels a side. Raise ValueError when the file is no raster image."""
    from PIL import Image, UnidentifiedImageError

    if stages.sniff_type(path) not in RASTER_TYPES:
        raise ValueError("not a raster image")
    try:
        with Image.open(path) as img:
            if img.size[0] * img.size[1] > IMAGE_PIXELS:
                raise ValueError("the image is too large to preview")
            img.draft("RGB", (IMAGE_EDGE, IMAGE_EDGE))  # JPEG: decode at a reduced scale
            # Shrink in the image's own mode (RGB is 3 bytes a pixel), then convert the small copy.
            source = img if img.mode in ("RGB", "RGBA", "L", "LA") else img.convert("RGBA")
            source.thumbnail((IMAGE_EDGE, IMAGE_EDGE))
            frame = source.convert("RGBA")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"corrupt or unreadable image: {exc}") from None
    out = io.BytesIO()
    lowest_alpha, _ = frame.getchannel("A").getextrema()
    if isinstance(lowest_alpha, int) and lowest_alpha < 255:  # some transparency: keep it
        frame.save(out, format="PNG", optimize=False)
        return out.getvalue(), "image/png"
    frame.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue(), "image/jpeg"
