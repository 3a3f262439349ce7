"""Snippets: the ASCII shortcut finds exactly the spans the index's tokenizer would."""

from __future__ import annotations

import random

import pytest

from engine.market.snippets import _spans, snippet
from engine.market.text import _RUN, MAX_TERM_CHARS, fold_run


def tokenizer_spans(text: str, terms: set[str]) -> list[tuple[int, int]]:
    return [m.span() for m in _RUN.finditer(text) if not terms.isdisjoint(fold_run(m.group()))]


TEXTS = [
    "Hello_world foo_bar x1y2 ABC abc Abc 123 a1 under_score_word word_ _word word-word (word) word.",
    "Cafe CAFE cafe's naïve NAIVE résumé Ørsted orsted ½ ﬁle file",  # not ASCII: the tokenizer path
    "z" * (MAX_TERM_CHARS + 20) + " " + "z" * MAX_TERM_CHARS + " zz",
    "The quick brown fox jumps over the lazy dog. THE END, the end; the-end",
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_ascii_shortcut_finds_the_tokenizers_spans(text: str) -> None:
    words = sorted({t for m in _RUN.finditer(text) for t in fold_run(m.group())})
    rng = random.Random(5)
    for size in (1, 2, 3, 5):
        for _ in range(20):
            terms = set(rng.sample(words, min(size, len(words)))) | {"absent", "x1", "1", "score", "cafe", "z" * MAX_TERM_CHARS}
            assert _spans(text, terms) == tokenizer_spans(text, terms), terms


def test_a_snippet_highlights_whole_words_only() -> None:
    cut = snippet("Word words sword WORD word_x", {"word"})
    assert [cut.text[s:e] for s, e in cut.highlights] == ["Word", "WORD", "word"]
