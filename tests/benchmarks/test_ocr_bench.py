"""``python -m bench ocr``: the engines' comparison runs and scores what it reads."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench import ocr as bench_ocr
from engine.pipeline import ocr


def test_word_accuracy_counts_expected_words_read_in_order() -> None:
    assert bench_ocr.accuracy("Café Müller pays 12 EUR", "Café Müller pays 12 EUR", fold=False) == 1.0
    assert bench_ocr.accuracy("Café Müller pays 12 EUR", "Cafe Muller pays 12 EUR", fold=False) == 0.6
    assert bench_ocr.accuracy("Café Müller pays 12 EUR", "Cafe Muller pays 12 EUR", fold=True) == 1.0
    assert bench_ocr.accuracy("one two three four", "two one four", fold=True) == 0.5  # "one" out of order


def test_the_comparison_measures_rapidocr_and_says_when_tesseract_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")  # no tesseract here, whatever this machine has
    monkeypatch.setattr(ocr, "_engines", {})
    (section,) = bench_ocr.run(argparse.Namespace(runs=1, dense_lines=3), tmp_path)
    assert section.notes == ["tesseract: not measured (tesseract not installed)"]
    assert [r.key for r in section.rows] == ["rapidocr:png", "rapidocr:jpeg", "rapidocr:rgba", "rapidocr:scan", "rapidocr:dense"]
    for row in section.rows:
        assert len(row.values) == 1 and row.values[0] > 0 and row.baseline is None
        # every word of the suite's images; the dense page's "Kaistraße" is read "KaistraBe" (both engines)
        assert row.extra["word_accuracy_folded"] >= (0.95 if row.key == "rapidocr:dense" else 1.0), (row.key, row.extra["text"])
