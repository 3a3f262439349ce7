"""OCR engines side by side: RapidOCR (the default, from PyPI) against Tesseract (optional).

    python -m bench ocr [--runs 3] [--dense-lines 40]
    python bench/ocr.py ...        (the same)

Each engine reads the same generated images, one thread each (``pipeline.ocr_threads =
1``; Tesseract with ``OMP_THREAD_LIMIT=1``), through the engine's own adapters
(:mod:`engine.pipeline.ocr`), so what is timed is what the pipeline runs:

- the suite's test images: two lines at 48 px as PNG, JPEG (quality 75) and transparent
  PNG (flattened on white first, as the pipeline does);
- the suite's scanned invoice: an image-only PDF page (three lines with accents) rendered
  by PDFium at 300 dpi;
- a dense invoice page: A4 at 300 dpi, ``--dense-lines`` lines of invoice text at 40 px
  (about 10 pt), accents and figures included: the shape scanned invoices have.

Per image and engine: seconds per image (median over ``--runs``; the engine is loaded and
warmed first, not timed) and word accuracy, the share of the expected words read, in
order (difflib matching on lowercased words), exactly and with accents folded (search
folds accents). Tesseract is the baseline where installed; without it the section says
so and shows RapidOCR alone. Left out: memory (RapidOCR's ONNX sessions take ~0.5 GB at
peak on a dense page; Tesseract runs in its own process), other scripts and languages,
photos of documents (skew, blur, perspective), and handwriting.
"""

from __future__ import annotations

import argparse
import difflib
import io
import re
import statistics
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # ``python bench/ocr.py``: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import Row, Section  # noqa: E402

TWO_LINES = ("Harbour invoice 4711", "Paid in full today")
INVOICE = ("Facture 2025-0425 Café Müller", "Total dû 1234,50 EUR", "Échéance le 30 juin")
DENSE = (
    "Invoice {n:04d} issued to Nordhafen Logistik GmbH, Kaistraße 12, 20457 Hamburg",
    "Container freight MSCU {n:07d} from Rotterdam to Göteborg, 40 ft high cube",
    "Customs clearance and port authority fees for vessel Aurora, berth {n}",
    "Subtotal 12 480,00 EUR; VAT 19 % 2 371,20 EUR; total due 14 851,20 EUR",
    "Payment within 30 days to IBAN DE89 3704 0044 0532 0130 00, référence {n}",
)


def add_arguments(parser: argparse.ArgumentParser, quick: bool = False) -> None:
    parser.add_argument("--runs", type=int, default=1 if quick else 3, help="reads of each image per engine")
    parser.add_argument("--dense-lines", type=int, default=20 if quick else 40, help="lines on the dense A4 page")


def _font(size: int) -> Any:
    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(str(Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")), size)


def _lines_image(lines: tuple[str, ...], *, size: int = 48, width: int = 1000, gap: int = 100, mode: str = "RGB") -> Any:
    from PIL import Image, ImageDraw

    image = Image.new(mode, (width, 120 + gap * len(lines)), (0, 0, 0, 0) if mode == "RGBA" else "white")
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((40, 40 + gap * index), line, font=_font(size), fill="black")
    return image


def _flattened(image: Any) -> Any:
    from PIL import Image

    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def _jpeg(image: Any) -> Any:
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _scanned_page(work: Path) -> Any:
    """The suite's image-only invoice PDF, rendered as the pipeline renders it."""
    from fpdf import FPDF

    from engine.pipeline.ocr import OcrOptions
    from engine.pipeline.scanned import _Renderer

    pdf = FPDF()
    pdf.add_page()
    pdf.image(_lines_image(INVOICE), x=15, y=20, w=180)
    path = work / "scan.pdf"
    path.write_bytes(bytes(pdf.output()))
    with _Renderer(path) as renderer:
        image, _ = renderer.render(0, OcrOptions())
    return image


def _dense_page(count: int) -> tuple[Any, tuple[str, ...]]:
    from PIL import Image, ImageDraw

    lines = tuple(DENSE[i % len(DENSE)].format(n=1000 + 37 * i) for i in range(count))
    page = Image.new("RGB", (2480, 3508), "white")
    draw = ImageDraw.Draw(page)
    for index, line in enumerate(lines):
        draw.text((180, 200 + 78 * index), line, font=_font(40), fill="black")
    return page, lines


def _words(text: str, fold: bool) -> list[str]:
    if fold:
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.findall(r"\w+", text.lower())


def accuracy(expected: str, got: str, fold: bool) -> float:
    """The share of the expected words read, in order."""
    want, have = _words(expected, fold), _words(got, fold)
    matched = sum(block.size for block in difflib.SequenceMatcher(None, want, have, autojunk=False).get_matching_blocks())
    return matched / len(want) if want else 1.0


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    from engine.pipeline.ocr import OcrOptions, load_ocr

    work.mkdir(parents=True, exist_ok=True)
    dense, dense_lines = _dense_page(args.dense_lines)
    two = _lines_image(TWO_LINES)
    images = [
        ("png", "2 lines, 48 px, PNG", two, TWO_LINES),
        ("jpeg", "2 lines, 48 px, JPEG q75", _jpeg(two), TWO_LINES),
        ("rgba", "2 lines, transparent PNG", _flattened(_lines_image(TWO_LINES, mode="RGBA")), TWO_LINES),
        ("scan", "scanned invoice PDF page, 300 dpi", _scanned_page(work), INVOICE),
        ("dense", f"dense A4 page, {args.dense_lines} lines, 300 dpi", dense, dense_lines),
    ]
    engines = {name: load_ocr(OcrOptions(engine=name, threads=1)) for name in ("tesseract", "rapidocr")}
    rows: list[Row] = []
    notes: list[str] = []
    for name, engine in engines.items():
        if not engine.available:
            notes.append(f"{name}: not measured ({engine.reason})")
            continue
        engine.read(two, 0)  # load and warm: not timed
        for key, label, image, lines in images:
            expected = " ".join(lines)
            seconds, text = [], ""
            for _ in range(args.runs):
                started = time.perf_counter()
                text = " ".join(line["text"] for line in engine.read(image, 0))
                seconds.append(time.perf_counter() - started)
            exact, folded = accuracy(expected, text, fold=False), accuracy(expected, text, fold=True)
            base = f"tesseract:{key}" if name == "rapidocr" and engines["tesseract"].available else None
            rows.append(Row(
                key=f"{name}:{key}", label=f"{name}: {label}", unit="s/image", values=seconds, baseline=base,
                is_baseline=name == "tesseract", lower_is_better=True, short=f"tesseract: {key}",
                note=f"words {exact:.0%} exact, {folded:.0%} accents folded",
                extra={"word_accuracy": exact, "word_accuracy_folded": folded, "text": text[:2000]},
            ))  # fmt: skip
            print(f"ocr: {name} {key}: {statistics.median(seconds):.2f} s, words {exact:.0%} / {folded:.0%}", flush=True)
    order = [key for key, *_ in images]
    rows.sort(key=lambda r: (order.index(r.key.split(":")[1]), r.key.split(":")[0] != "tesseract"))
    return [Section(
        key="ocr", title="OCR: RapidOCR (default) against Tesseract, one thread each", rows=rows,
        baselines=["Tesseract 5 (the executable, eng), reading the same image in the same run"],
        notes=notes,
    )]  # fmt: skip


if __name__ == "__main__":
    from bench.__main__ import entry

    sys.exit(entry(["ocr", *sys.argv[1:]]))
