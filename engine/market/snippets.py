"""Snippets: the part of a chunk around its best match, with the matched terms' offsets.

The chunk is tokenized as the index tokenizes it (:mod:`engine.market.text`), so a
highlighted span is exactly a run of text whose folded term the query looked for
(``Café`` for ``cafe``). Offsets are ``[start, end)`` in characters (Unicode code points)
of ``snippet``. The window holds the most matched terms; it starts and ends on word
boundaries, with "…" where it cuts the chunk.

ASCII text (the common case) takes a shortcut with the same answer: there a run of letters
and digits folds to itself in lower case, so the matched runs are found by looking for the
query's terms in the lower-cased text (``str.find``, whole runs only) instead of folding
every word (a regular expression of the terms, compiled per query before, was more than
half of a lexical search's snippet time in py-spy's samples).

A term written ``abcd*`` (a plain prefix, :func:`engine.market.query.prefix_term`) marks
every run one of whose folded terms starts with ``abcd``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.market.text import _RUN, MAX_TERM_CHARS, fold_run

SNIPPET_CHARS = 240
ELLIPSIS = "…"


@dataclass(frozen=True)
class Snippet:
    text: str
    highlights: list[tuple[int, int]]


_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ASCII_RUN = re.compile(r"[a-z0-9]*")


def _ascii_spans(lowered: str, terms: set[str]) -> list[tuple[int, int]]:
    """Whole runs of letters and digits of the lower-cased ASCII text ``lowered`` that
    equal one of ``terms`` (or start with ``abcd`` for ``abcd*``), found with ``str.find``:
    no regular expression is compiled per query. A term of MAX_TERM_CHARS characters may
    have been cut there by folding, so it matches a longer run's start, as a prefix does."""
    found: set[tuple[int, int]] = set()
    n = len(lowered)
    for term in terms:
        prefix = term.endswith("*")
        word = term[:-1] if prefix else term
        if not word or not (word.isascii() and word.isalnum()):
            continue  # folded ASCII text holds only ASCII letters and digits
        prefix = prefix or len(word) >= MAX_TERM_CHARS
        size = len(word)
        at = lowered.find(word)
        while at >= 0:
            if at == 0 or lowered[at - 1] not in _ASCII_ALNUM:
                end = at + size
                if prefix:
                    found.add((at, _ASCII_RUN.match(lowered, end).end()))  # type: ignore[union-attr]
                elif end == n or lowered[end] not in _ASCII_ALNUM:
                    found.add((at, end))
            at = lowered.find(word, at + 1)
    return sorted(found)


def _matched(run: str, terms: set[str], prefixes: tuple[str, ...]) -> bool:
    folded = fold_run(run)
    return not terms.isdisjoint(folded) or any(term.startswith(prefixes) for term in folded)


def _spans(text: str, terms: set[str]) -> list[tuple[int, int]]:
    """``[start, end)`` of every run of ``text`` one of whose folded terms is in ``terms``
    (or starts with ``abcd`` for a term ``abcd*`` there)."""
    if text.isascii():  # lower() keeps ASCII offsets; an ASCII run folds to its lower case
        return _ascii_spans(text.lower(), terms)
    # the index's tokenizer, without building a Token per word
    prefixes = tuple(t[:-1] for t in terms if t.endswith("*"))
    if not prefixes:
        return [match.span() for match in _RUN.finditer(text) if not terms.isdisjoint(fold_run(match.group()))]
    return [match.span() for match in _RUN.finditer(text) if _matched(match.group(), terms, prefixes)]


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
