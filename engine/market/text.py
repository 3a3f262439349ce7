"""How text becomes search terms, the same way on every backend and for queries.

A term is a run of letters and digits, folded: case-folded (``str.casefold``), then
decomposed (NFKD) with the combining marks dropped, so ``Café`` and ``CAFE`` are both
``cafe`` and ``ﬁle`` is ``file``; the Latin letters NFKD leaves whole are folded as
Lucene's ASCII folding does (``Ørsted`` → ``orsted``, ``Æ`` → ``ae``). A run that folding splits (``½`` → ``1⁄2``) gives several
terms at consecutive positions. Terms longer than :data:`MAX_TERM_CHARS` are cut there.

The engine folds before it indexes and before it queries, so SQLite's FTS5 (whose
``unicode61`` tokenizer sees only space-separated folded terms) and PostgreSQL (whose
``tsvector`` the engine writes itself, positions included) hold identical terms.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

MAX_TERM_CHARS = 100
# Latin letters NFKD does not decompose, folded as Lucene's ASCIIFoldingFilter does
# (after case folding, so lower case only).
_LATIN = str.maketrans({"ø": "o", "đ": "d", "ð": "d", "ł": "l", "ħ": "h", "ŧ": "t", "ı": "i", "ŀ": "l", "ƀ": "b", "ɨ": "i",
                        "æ": "ae", "œ": "oe", "þ": "th", "ĸ": "q"})
# Runs of letters and digits (``\w`` less the underscore): the text tokenizer, not a
# query parser (queries are parsed by luqum, see engine/market/query.py).
_RUN = re.compile(r"[^\W_]+")


@lru_cache(maxsize=65536)
def fold_run(run: str) -> tuple[str, ...]:
    """The terms of one run of letters and digits (usually one, sometimes none or more)."""
    decomposed = unicodedata.normalize("NFKD", run.casefold().translate(_LATIN))
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return tuple(part[:MAX_TERM_CHARS] for part in _RUN.findall(kept))


def strip_accents(text: str) -> str:
    """``text`` decomposed with its combining marks dropped (case and punctuation kept)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True)
class Token:
    term: str
    start: int  # character offsets of the run in the original text
    end: int


def tokens(text: str) -> Iterator[Token]:
    """The terms of ``text`` in order, each with the span of text it came from."""
    for match in _RUN.finditer(text):
        for term in fold_run(match.group()):
            yield Token(term, match.start(), match.end())


def terms(text: str) -> list[str]:
    return [t.term for t in tokens(text)]


@dataclass(frozen=True)
class IndexedChunk:
    """A chunk as both backends index it."""

    text: str
    terms: tuple[str, ...]

    @property
    def terms_text(self) -> str:
        """Space-separated terms (what FTS5 tokenizes)."""
        return " ".join(self.terms)

    @property
    def length(self) -> int:
        return len(self.terms)

    def frequencies(self) -> dict[str, int]:
        return dict(Counter(self.terms))

    def tsvector(self) -> str:
        """A PostgreSQL ``tsvector`` literal with 1-based positions (at most 16,383, as
        PostgreSQL keeps them; a chunk of ``pipeline.chunk_chars`` never has that many)."""
        positions: dict[str, list[int]] = {}
        for n, term in enumerate(self.terms, start=1):
            positions.setdefault(term, []).append(min(n, 16383))
        return " ".join(f"'{term}':{','.join(map(str, pos[:256]))}" for term, pos in positions.items())


def index_chunk(text: str) -> IndexedChunk:
    return IndexedChunk(text, tuple(terms(text)))
