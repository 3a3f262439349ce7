"""Real input files for the pipeline stages, generated per test in ``tmp_path``.

PDFs come from fpdf2, DOCX from python-docx and images from Pillow with the DejaVu Sans
TrueType font that matplotlib ships (a dev dependency: no system fonts needed), so
extraction is checked against text we know was written. Scanned PDFs are fpdf2 pages
holding nothing but a picture of text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

PDF_PAGES = (
    "Quarterly revenue grew in the northern region.",
    "The second page mentions the harbour expansion.",
)
IMAGE_LINES = ("Harbour invoice 4711", "Paid in full today")
SCAN_LINES = ("Facture 2025-0425 Café Müller", "Total dû 1234,50 EUR", "Échéance le 30 juin")


def dejavu_sans() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")


def make_pdf(path: Path, pages: tuple[str, ...] = PDF_PAGES) -> Path:
    """Write a PDF with one page per string, as real selectable text."""
    from fpdf import FPDF

    pdf = FPDF()
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=14)
        pdf.multi_cell(0, 10, text)
    path.write_bytes(bytes(pdf.output()))
    return path


def text_image(lines: tuple[str, ...] = IMAGE_LINES, *, mode: str = "RGB") -> Image.Image:
    """Black text, 48 px, on white (RGB) or on a fully transparent background (RGBA)."""
    font = ImageFont.truetype(str(dejavu_sans()), 48)
    background = (0, 0, 0, 0) if mode == "RGBA" else "white"
    image = Image.new(mode, (1000, 120 + 100 * len(lines)), background)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((40, 40 + 100 * index), line, font=font, fill="black")
    return image


def make_scanned_pdf(path: Path, pages: tuple[tuple[str, ...] | str, ...] = (SCAN_LINES,)) -> Path:
    """A PDF whose pages are pictures of text (a tuple of lines: no text layer at all) or
    real text (a string), in order: an image-only scan, or a mixed document."""
    from fpdf import FPDF

    pdf = FPDF()  # A4, mm
    for page in pages:
        pdf.add_page()
        if isinstance(page, str):
            pdf.set_font("Helvetica", size=14)
            pdf.multi_cell(0, 10, page)
        else:
            # 1000 px wide over 180 mm: ~141 dpi, 48 px glyphs are ~24 pt, as a scanner at 150 dpi gives
            pdf.image(text_image(page), x=15, y=20, w=180)
    path.write_bytes(bytes(pdf.output()))
    return path


@pytest.fixture(name="pdf_file")
def _pdf_file(tmp_path: Path) -> Path:
    return make_pdf(tmp_path / "report.pdf")


@pytest.fixture(name="docx_file")
def _docx_file(tmp_path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Shipping manifest", level=1)
    document.add_paragraph("Containers arrive at the harbour every Tuesday.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Vessel", "Tonnage"
    table.cell(1, 0).text, table.cell(1, 1).text = "Aurora", "52000"
    document.add_paragraph("Closing remark after the table.")
    path = tmp_path / "manifest.docx"
    document.save(str(path))
    return path


@pytest.fixture(name="write_image")
def _write_image(tmp_path: Path) -> Callable[..., Path]:
    def write(fmt: str = "PNG", *, mode: str = "RGB", lines: tuple[str, ...] = IMAGE_LINES) -> Path:
        path = tmp_path / f"scan.{fmt.lower()}"
        text_image(lines, mode=mode).save(path, format=fmt)
        return path

    return write
