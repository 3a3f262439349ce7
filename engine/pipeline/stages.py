"""The synchronous work of each pipeline stage: sniff, extract, chunk, pick keywords.

Every function here is a plain blocking function with no shared mutable state, so the
caller can run several at once with ``trio.to_thread.run_sync``. Memory stays bounded:
type sniffing reads a fixed prefix, text extraction streams and stops at
``max_text_chars``, and DOCX/image inputs are size-checked before they are decoded.

Errors: :class:`StageRejected` means the input itself is unacceptable (a retry cannot
help); ``OSError`` (disk) and ``TimeoutError`` (a stuck OCR run) propagate unchanged so
the caller may retry them. Heavy parsers (pypdf, python-docx, Pillow, PDFium, the OCR
engines) are imported lazily, so importing this module costs nothing. Images and scanned
PDF pages are handled in :mod:`engine.pipeline.scanned`.
"""

from __future__ import annotations

import codecs
import json
import re
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from engine.pipeline.ocr import OcrOptions

MAX_TEXT_CHARS = 20_000_000
SNIFF_BYTES = 1 << 20
DOCX_MAX_XML_BYTES = 256 << 20
_READ_CHUNK = 1 << 16

PDF, DOCX = "application/pdf", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
JSON, NDJSON = "application/json", "application/x-ndjson"
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/html", "text/csv", JSON, NDJSON})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/tiff", "image/gif", "image/webp"})
SUPPORTED_TYPES = TEXT_TYPES | IMAGE_TYPES | {PDF, DOCX}

# Common spellings clients send for the same thing.
_ALIASES = {
    "application/x-pdf": PDF,
    "text/x-markdown": "text/markdown",
    "text/md": "text/markdown",
    "application/ndjson": NDJSON,
    "application/jsonl": NDJSON,
    "application/x-jsonlines": NDJSON,
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/tif": "image/tiff",
}

# (magic, offset, type). Checked in order against the file's first bytes.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"II+\x00", 0, "image/tiff"),
    (b"MM\x00+", 0, "image/tiff"),
    (b"WEBP", 8, "image/webp"),  # after b"RIFF" + size, checked below
    (b"PK\x03\x04", 0, "application/zip"),
    (b"\x1f\x8b", 0, "application/gzip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "application/x-ole-storage"),
)


class StageRejected(Exception):
    """The input itself is unacceptable (type mismatch, unsupported, corrupt): retrying cannot help."""


@dataclass(frozen=True)
class Extracted:
    """What :func:`extract` got out of a file.

    ``blocks`` are OCR lines: ``{"text", "confidence" (0..1), "bbox" ([left, top, right,
    bottom] in pixels), "page" (frame or PDF page index, from 0)}``; lines of a PDF page
    also carry ``"dpi"``, the resolution the page was rendered at for OCR.
    """

    text: str
    ocr_blocks: bool
    ocr_reason: str | None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False  # text was cut at max_text_chars


# --------------------------------------------------------------------------- normalize


def normalize(path: Path, declared_mime: str, *, sniff_bytes: int = SNIFF_BYTES) -> str:
    """Sniff the real type from the bytes; return the normalized MIME type.

    Binary formats must match the declaration exactly (after aliases such as
    ``image/jpg``). Text types are interchangeable as long as the bytes are UTF-8 text;
    JSON and NDJSON must also parse. Only the first ``sniff_bytes`` are read.
    Raise StageRejected(reason) on a mismatch or an unsupported type.
    """
    declared = _canonical(declared_mime)
    if declared not in SUPPORTED_TYPES:
        raise StageRejected(f"unsupported type {declared_mime!r}")
    with open(path, "rb") as f:
        head = f.read(sniff_bytes)
        at_eof = not f.read(1)
    if not head:
        raise StageRejected("empty file")
    sniffed = _sniff_binary(path, head)
    if sniffed is not None:
        if sniffed != declared:
            raise StageRejected(f"declared {declared} but the bytes are {sniffed}")
        return declared
    if declared not in TEXT_TYPES:
        raise StageRejected(f"declared {declared} but the bytes are not {declared}")
    sample = _decode_text_sample(head, at_eof)
    if declared == JSON:
        _check_json(sample, at_eof)
    elif declared == NDJSON:
        _check_ndjson(sample, at_eof)
    return declared


def _canonical(mime: str) -> str:
    base = mime.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def _sniff_binary(path: Path, head: bytes) -> str | None:
    kind = None
    for magic, offset, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            kind = mime
            break
    if kind == "image/webp" and not head.startswith(b"RIFF"):
        kind = None
    if kind is None and b"%PDF-" in head[:1024]:  # readers accept the header anywhere in the first KiB
        kind = PDF
    if kind == "application/zip":
        kind = _sniff_zip(path)
    return kind


def sniff_type(path: Path) -> str | None:
    """The binary type the file's first bytes announce (PDF, DOCX, an image, a ZIP …), or
    None: text, or nothing recognised. Reads a few KiB (a ZIP's central directory too)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    return _sniff_binary(path, head)


def _sniff_zip(path: Path) -> str:
    # ZipFile reads only the central directory at the end: cheap even for huge files.
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return f"an unreadable ZIP archive ({exc})"
    if "word/document.xml" in names and "[Content_Types].xml" in names:
        return DOCX
    return "application/zip"


def _decode_text_sample(head: bytes, at_eof: bool) -> str:
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    try:
        text = decoder.decode(head, final=at_eof)  # a cut multi-byte char at the window end is fine
    except UnicodeDecodeError as exc:
        raise StageRejected(f"bytes are not UTF-8 text (invalid byte at offset {exc.start})") from None
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\v\x1b")
    if "\x00" in text or controls > max(1, len(text) // 100):
        raise StageRejected("bytes are binary, not text (control characters)")
    return text


def _check_json(sample: str, at_eof: bool) -> None:
    if at_eof:
        try:
            json.loads(sample)
        except ValueError as exc:
            raise StageRejected(f"declared {JSON} but the bytes are not valid JSON ({exc})") from None
    elif sample.lstrip()[:1] not in ("{", "["):
        raise StageRejected(f"declared {JSON} but the bytes do not start a JSON document")


def _check_ndjson(sample: str, at_eof: bool) -> None:
    lines = sample.split("\n")
    if not at_eof:
        lines = lines[:-1]  # the last line may be cut by the sniff window
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                json.loads(line)
            except ValueError:
                raise StageRejected(f"declared {NDJSON} but line {number} is not JSON") from None


# --------------------------------------------------------------------------- extract

# What malformed input provokes inside third-party parsers (not disk errors: those may be retried).
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, KeyError, IndexError, TypeError, AttributeError, AssertionError,
    RecursionError, EOFError, SyntaxError, struct.error, zlib.error, zipfile.BadZipFile,
)  # fmt: skip


def _errors(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    return (*extra, *_PARSE_ERRORS)


parse_errors = _errors  # for other readers of untrusted files (the review preview)


def extract(path: Path, mime: str, *, max_text_chars: int = MAX_TEXT_CHARS, ocr: OcrOptions | None = None) -> Extracted:
    """Get the plain text (and OCR blocks for images and scanned PDF pages) out of a file
    of a normalized type.

    Text is capped at ``max_text_chars`` (``Extracted.truncated`` says so). Images and PDF
    pages without a text layer are read by OCR (:mod:`engine.pipeline.scanned`); when the
    OCR engine cannot run here the result says why instead of faking text. Raise
    StageRejected for a corrupt file, TimeoutError when OCR overruns.
    """
    from engine.pipeline import scanned  # it builds on this module

    ocr = ocr or OcrOptions()
    mime = _canonical(mime)
    if mime in ("text/plain", "text/csv", JSON, NDJSON):
        text, truncated = _read_text(path, max_text_chars)
        return Extracted(text, False, None, [], truncated)
    if mime == "text/markdown":
        raw, truncated = _read_text(path, max_text_chars)
        return Extracted(markdown_to_text(raw), False, None, [], truncated)
    if mime == "text/html":
        text, truncated = _html_text(path, max_text_chars)
        return Extracted(text, False, None, [], truncated)
    if mime == PDF:
        return scanned.read_pdf(path, max_text_chars, ocr)
    if mime == DOCX:
        return _docx_text(path, max_text_chars)
    if mime in IMAGE_TYPES:
        return scanned.read_image(path, max_text_chars, ocr)
    raise StageRejected(f"unsupported type {mime!r}")


def _iter_text(path: Path) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    try:
        with open(path, "rb") as f:
            while data := f.read(_READ_CHUNK):
                yield decoder.decode(data)
            yield decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise StageRejected("bytes are not UTF-8 text") from None


class _Capped:
    """Collects text pieces until a character budget is spent."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.left = limit
        self.truncated = False

    def add(self, piece: str) -> bool:
        """Append ``piece``; return False once the budget is spent (stop feeding)."""
        if len(piece) > self.left:
            piece, self.truncated = piece[: self.left], True
        self.parts.append(piece)
        self.left -= len(piece)
        return not self.truncated

    def text(self, sep: str = "") -> str:
        return sep.join(self.parts)


def _read_text(path: Path, limit: int) -> tuple[str, bool]:
    out = _Capped(limit)
    for piece in _iter_text(path):
        if not out.add(piece):
            break
    return out.text(), out.truncated


_MD_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^[ \t]*(```|~~~).*$", re.M), ""),  # code fences (keep the code itself)
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links -> label
    (re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.M), r"\1"),  # ATX headings
    (re.compile(r"^ {0,3}>[ \t]?", re.M), ""),  # block quotes
    (re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+", re.M), ""),  # list markers
    (re.compile(r"^ {0,3}(?:[-*_][ \t]*){3,}$", re.M), ""),  # horizontal rules
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),  # strong
    (re.compile(r"(?<![\w*])([*_])(?!\s)(.+?)(?<!\s)\1(?![\w*])"), r"\2"),  # emphasis
    (re.compile(r"`([^`]+)`"), r"\1"),  # inline code
    (re.compile(r"<[^>\n]+>"), ""),  # inline HTML tags
)


def markdown_to_text(markdown: str) -> str:
    """Strip Markdown syntax, keeping the words a reader sees."""
    for pattern, replacement in _MD_RULES:
        markdown = pattern.sub(replacement, markdown)
    return markdown.strip()


class _VisibleText(HTMLParser):
    """Streams the text a browser would render: no script, style, template or comments."""

    _HIDDEN = frozenset({"script", "style", "noscript", "template"})
    _BLOCKS = frozenset(
        "address article aside blockquote br dd div dl dt figcaption footer form h1 h2 h3 h4 h5 h6 "
        "header hr li main nav ol p pre section table td th title tr ul".split()
    )

    def __init__(self, out: _Capped) -> None:
        super().__init__(convert_charrefs=True)
        self.out = out
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BLOCKS:
            self.out.add("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self._BLOCKS:
            self.out.add("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.add(data)


def _html_text(path: Path, limit: int) -> tuple[str, bool]:
    out = _Capped(limit)
    parser = _VisibleText(out)
    for piece in _iter_text(path):
        parser.feed(piece)
        if out.truncated:
            break
    else:
        parser.close()
    lines = (" ".join(line.split()) for line in out.text().splitlines())
    return "\n".join(line for line in lines if line), out.truncated


def _docx_text(path: Path, limit: int) -> Extracted:
    import docx
    from docx.opc.exceptions import OpcError
    from docx.table import Table

    try:
        with zipfile.ZipFile(path) as zf:  # refuse zip bombs before python-docx inflates the part
            size = zf.getinfo("word/document.xml").file_size
        if size > DOCX_MAX_XML_BYTES:
            raise StageRejected(f"DOCX body is too large ({size} bytes of XML)")
        document = docx.Document(str(path))
        out = _Capped(limit)
        for item in document.iter_inner_content():  # paragraphs and tables in document order
            rows = ([c.text for c in row.cells] for row in item.rows) if isinstance(item, Table) else [[item.text]]
            if not all(out.add("\t".join(cells) + "\n") for cells in rows):
                break
    except _errors(OpcError) as exc:
        raise StageRejected(f"corrupt DOCX: {exc}") from None
    text = re.sub(r"\n{3,}", "\n\n", out.text()).strip()
    return Extracted(text, False, None, [], out.truncated)


# --------------------------------------------------------------------------- chunk


_SPLITTERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\n[ \t]*\n\s*"), "\n\n"),  # paragraphs
    (re.compile(r"\n"), "\n"),  # lines
    (re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"')\]])\s+"), " "),  # sentences
    (re.compile(r"\s+"), " "),  # words
)


def chunk_text(text: str, max_chars: int = 1000, overlap: int = 100) -> list[str]:
    """Split on paragraph, then line, sentence and word boundaries; no empty chunks.

    Each chunk is at most ``max_chars`` long and starts with up to ``overlap``
    characters (whole words) from the end of the previous chunk; the overlap is capped
    at half a chunk so every chunk brings mostly new text.
    """
    if max_chars <= 0 or overlap < 0:
        raise ValueError("need max_chars > 0 and overlap >= 0")
    overlap = min(overlap, max_chars // 2)
    chunks: list[str] = []
    current = ""
    for piece, sep in _pieces(text.strip(), max_chars, 0):
        if not current:
            current = piece
        elif len(current) + len(sep) + len(piece) <= max_chars:
            current += sep + piece
        else:
            chunks.append(current)
            tail = _tail(current, min(overlap, max_chars - len(piece) - len(sep)))
            current = tail + sep + piece if tail else piece
    if current:
        chunks.append(current)
    return chunks


def _pieces(text: str, max_chars: int, level: int) -> Iterator[tuple[str, str]]:
    """Yield (piece, separator that joined it to the previous piece), each piece <= max_chars."""
    if len(text) <= max_chars:
        if text:
            yield text, ""  # the caller supplies the separator of its own split
        return
    if level == len(_SPLITTERS):  # one "word" longer than a chunk: cut it
        for start in range(0, len(text), max_chars):
            yield text[start : start + max_chars], ""
        return
    pattern, sep = _SPLITTERS[level]
    for part in pattern.split(text):
        for index, (piece, inner_sep) in enumerate(_pieces(part.strip(), max_chars, level + 1)):
            yield piece, (inner_sep if index else sep)


def _tail(chunk: str, size: int) -> str:
    """The last ``size`` characters of ``chunk``, not starting mid-word."""
    if size <= 0:
        return ""
    if len(chunk) <= size:
        return chunk
    tail = chunk[-size:]
    if not chunk[-size - 1].isspace():
        cut = re.search(r"\s", tail)
        tail = tail[cut.end() :] if cut else ""
    return tail.strip()


# --------------------------------------------------------------------------- keywords


_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are aren't as at be because been before
    being below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't
    down during each either else etc even ever every few for from further get gets got had hadn't has hasn't
    have haven't having he he'd he'll he's her here here's hers herself him himself his how how's however i
    i'd i'll i'm i've if in into is isn't it it's its itself just let's like may me might more most much must
    mustn't my myself neither no nor not now of off often on once one only or other ought our ours ourselves
    out over own per same shall shan't she she'd she'll she's should shouldn't since so some such than that
    that's the their theirs them themselves then there there's these they they'd they'll they're they've this
    those though through thus to too under until up upon us very via was wasn't we we'd we'll we're we've were
    weren't what what's when when's where where's whether which while who who's whom whose why why's will
    with within without won't would wouldn't yet you you'd you'll you're you've your yours yourself
    yourselves""".split()
)


def keywords(text: str, limit: int = 10) -> list[str]:
    """Top keywords: lowercased words of 3+ letters, stopwords removed, most frequent first.

    Ties keep the order of first appearance, so the result is deterministic.
    """
    counts: Counter[str] = Counter()
    for match in _WORD.finditer(text):
        word = match.group().lower().replace("’", "'")
        if word.endswith("'s"):
            word = word[:-2]
        if len(word) >= 3 and word not in STOPWORDS:
            counts[word] += 1
    # Counter keeps insertion (first appearance) order and sorted() is stable.
    return [word for word, _ in sorted(counts.items(), key=lambda item: -item[1])[:limit]]
