"""Whether one chunk matches an expanded query tree, decided from its folded terms.

Vector and hybrid search check their constraints (``+`` clauses, explicit ``AND``
operands, ``-``/``NOT`` clauses) on the few hundred candidates the vector side found,
instead of gathering every chunk a common word matches (a set of 100,000 ids for a
frequent negated word). The rules are the index's, position for position:

* a term matches when the chunk holds it (the terms are the engine's folded ones,
  :mod:`engine.market.text`, exactly what FTS5 and the tsvector index); a prefix when
  the chunk holds a term starting with it;
* a phrase ``"a b c"``: the terms at consecutive positions, in order;
* a proximity ``"a b"~N``: every two of its distinct words at most N positions apart, in
  either order (FTS5 ``NEAR(a b, N-1)``, PostgreSQL ``a <d> b | b <d> a`` for d ≤ N);
* ``And`` all of its items (a ``Not`` item must not match), ``Or`` any.
"""

from __future__ import annotations

import itertools

from engine.market.query import And, Node, Not, Or, Pattern, Phrase, Prefix, Term, Terms


class Positions:
    """A chunk's folded terms, as the space-separated text both indexes hold: whether it
    holds a term or a prefix is answered on the text itself (a substring search, no split);
    positions are indexed on first need (a phrase or a proximity)."""

    def __init__(self, terms_text: str) -> None:
        self._text = f" {terms_text} "
        self._at: dict[str, list[int]] | None = None

    def has(self, term: str) -> bool:
        return f" {term} " in self._text

    def has_prefix(self, prefix: str) -> bool:
        return f" {prefix}" in self._text and len(self._text) > 2

    def at(self, term: str) -> list[int]:
        if self._at is None:
            self._at = {}
            for i, t in enumerate(self._text.split()):
                self._at.setdefault(t, []).append(i)
        return self._at.get(term, [])


def _phrase(p: Phrase, pos: Positions) -> bool:
    if p.slop == 0:
        later = [set(pos.at(t)) for t in p.terms[1:]]
        return any(all(start + i + 1 in at for i, at in enumerate(later)) for start in pos.at(p.terms[0]))
    words = list(dict.fromkeys(p.terms))
    if not all(pos.has(w) for w in words):
        return False
    for a, b in itertools.combinations(words, 2):
        bs = pos.at(b)
        if not any(0 < abs(x - y) <= p.slop for x in pos.at(a) for y in bs):
            return False
    return True


def matches(node: Node, pos: Positions) -> bool:
    """Whether a chunk with these term positions matches the expanded tree ``node``."""
    if isinstance(node, Term):
        return pos.has(node.term)
    if isinstance(node, Terms):
        return any(pos.has(t) for t in node.terms)
    if isinstance(node, Prefix):
        return pos.has_prefix(node.prefix)
    if isinstance(node, Phrase):
        return _phrase(node, pos)
    if isinstance(node, Or):
        return any(matches(item, pos) for item in node.items)
    if isinstance(node, And):
        return all(not matches(item.item, pos) if isinstance(item, Not) else matches(item, pos) for item in node.items)
    if isinstance(node, Not):
        return not matches(node.item, pos)
    if isinstance(node, Pattern):
        raise TypeError("a pattern must be expanded before matching")
    raise TypeError(f"cannot match {type(node).__name__}")
