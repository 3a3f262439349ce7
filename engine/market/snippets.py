"""Snippets: the part of a chunk around its best match, with the matched terms' offsets.

The chunk is tokenized as the index tokenizes it (:mod:`engine.market.text`), so a
highlighted span is exactly a run of text whose folded term the query looked for
(``Café`` for ``cafe``). Offsets are ``[start, end)`` in characters (Unicode code points)
of ``snippet``. The window holds the most matched terms; it starts and ends on word
boundaries, with "…" where it cuts the chunk.

ASCII text (the common case) takes a shortcut with the same answer: there a run of letters
and digits folds to itself in lower case, so the matched runs are found by one regular
expression of the query's terms over the lower-cased text instead of folding every word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from engine.market.text import _RUN, MAX_TERM_CHARS, fold_run

SNIPPET_CHARS = 240
ELLIPSIS = "…"


@dataclass(frozen=True)
class Snippet:
    text: str
    highlights: list[tuple[int, int]]


@lru_cache(maxsize=256)
def _ascii_pattern(terms: frozenset[str]) -> re.Pattern[str] | None:
    """Whole ASCII runs (``[^\\W_]+`` on ASCII text) equal to one of ``terms``; None when
    a term may have been cut at MAX_TERM_CHARS (it then matches a longer run's start)."""
    if any(len(t) >= MAX_TERM_CHARS for t in terms):
        return None
    words = sorted(t for t in terms if t.isascii() and t.isalnum())
    if not words:
        return re.compile(r"(?!)")
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(words) + r")(?![A-Za-z0-9])")


def _spans(text: str, terms: set[str]) -> list[tuple[int, int]]:
    """``[start, end)`` of every run of ``text`` one of whose folded terms is in ``terms``."""
    if text.isascii():
        pattern = _ascii_pattern(frozenset(terms))
        if pattern is not None:  # lower() keeps ASCII offsets; an ASCII run folds to its lower case
            return [m.span() for m in pattern.finditer(text.lower())]
    # the index's tokenizer, without building a Token per word
    return [match.span() for match in _RUN.finditer(text) if not terms.isdisjoint(fold_run(match.group()))]


def snippet(text: str, terms: set[str], width: int = SNIPPET_CHARS) -> Snippet:
    spans = _spans(text, terms) if terms else []
    if len(text) <= width:
        return Snippet(text, spans)
    start = 0
    if spans:  # the window (of at most width characters) starting at a match that holds the most matches
        best, best_count = 0, -1
        j = 0
        for i, (s, _) in enumerate(spans):
            while j < len(spans) and spans[j][1] <= s + width:
                j += 1
            if j - i > best_count:
                best, best_count = i, j - i
        start = max(0, spans[best][0] - width // 6)
    end = min(len(text), start + width)
    start = max(0, min(start, end - width))
    while start > 0 and not text[start - 1].isspace() and start > end - width - 20:
        start -= 1  # do not begin mid-word
    while end < len(text) and not text[end].isspace() and end < start + width + 20:
        end += 1
    prefix = ELLIPSIS if start > 0 else ""
    suffix = ELLIPSIS if end < len(text) else ""
    body = text[start:end].strip()
    lead = len(text[start:end]) - len(text[start:end].lstrip())
    shift = len(prefix) - start - lead
    inside = [(s + shift, e + shift) for s, e in spans if s >= start + lead and e <= start + lead + len(body)]
    return Snippet(prefix + body + suffix, inside)
