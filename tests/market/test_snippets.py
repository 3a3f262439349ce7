"""Snippets: the ASCII shortcut finds exactly the spans the index's tokenizer would."""

from __future__ import annotations

import random

import pytest

from engine.market.snippets import _spans, snippet
from engine.market.text import _RUN, MAX_TERM_CHARS, fold_run


def tokenizer_spans(text: str, terms: set[str]) -> list[tuple[int, int]]:
    """Runs with a folded term in ``terms`` or, for a term ``abcd*`` there, starting with ``abcd``."""
    prefixes = tuple(t[:-1] for t in terms if t.endswith("*"))
    return [m.span() for m in _RUN.finditer(text)
            if not terms.isdisjoint(fold_run(m.group())) or any(f.startswith(prefixes) for f in fold_run(m.group()) if prefixes)]


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
            prefixed = {t[: rng.randint(1, len(t))] + "*" for t in rng.sample(words, min(size, len(words)))} | {"absent*"}
            assert _spans(text, prefixed) == tokenizer_spans(text, prefixed), prefixed
            assert _spans(text, prefixed | terms) == tokenizer_spans(text, prefixed | terms), prefixed


def test_a_prefix_marks_every_word_starting_with_it() -> None:
    cut = snippet("Invoice inv2024 INVOICES vinv in Café café caf", {"inv*", "cafe*"})
    assert [cut.text[s:e] for s, e in cut.highlights] == ["Invoice", "inv2024", "INVOICES", "Café", "café"]
    cut = snippet("Invoice inv2024 INVOICES vinv in caf", {"inv*"})  # ASCII: the shortcut
    assert [cut.text[s:e] for s, e in cut.highlights] == ["Invoice", "inv2024", "INVOICES"]


def test_a_snippet_highlights_whole_words_only() -> None:
    cut = snippet("Word words sword WORD word_x", {"word"})
    assert [cut.text[s:e] for s, e in cut.highlights] == ["Word", "WORD", "word"]
