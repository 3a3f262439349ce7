"""The query language: what luqum's tree becomes, what is refused and where."""

from __future__ import annotations

import pytest

from engine.market.query import (
    And,
    InvalidQuery,
    Not,
    Or,
    Pattern,
    Phrase,
    Term,
    parse,
    positive_terms,
    scored_as_written,
    scored_units,
)
from engine.market.text import index_chunk, terms


def test_terms_fold_case_accents_and_ligatures():
    assert terms("Café CAFE ﬁle Straße Ørsted Æsir naïve") == ["cafe", "cafe", "file", "strasse", "orsted", "aesir", "naive"]
    chunk = index_chunk("a b a")
    assert chunk.tsvector() == "'a':1,3 'b':2" and chunk.terms_text == "a b a" and chunk.frequencies() == {"a": 2, "b": 1}


def test_juxtaposition_is_and_and_plus_minus_are_constraints():
    q = parse("+Acme invoice -draft")
    assert q.root == And((Term("acme"), Term("invoice"), Not(Term("draft"))))
    assert q.required == (Term("acme"),) and q.excluded == (Term("draft"),)
    assert q.words == ("acme", "invoice") and q.vector_text == "Acme invoice"
    assert parse("acme AND invoice").required == (Term("acme"), Term("invoice"))  # explicit AND operands are required too
    assert parse("acme invoice").required == ()


def test_phrases_proximity_and_split_words():
    assert parse('"Acme invoice"').root == Phrase(("acme", "invoice"))
    assert parse('"acme invoice"~5').root == Phrase(("acme", "invoice"), 5)
    assert parse("e-mail").root == Phrase(("e", "mail"))  # a word the index splits is a phrase
    assert parse('"one"').root == Term("one")


def test_patterns_keep_their_literal_prefix_for_the_dictionary_range():
    q = parse("Inv* in?oice *voice /inv[0-9]{4}/")
    pats = q.root.items
    assert [(p.regex, p.prefix) for p in pats[:3]] == [("inv.*", "inv"), ("in.oice", "in"), (".*voice", "")]
    assert isinstance(pats[3], Pattern) and pats[3].regex == "inv[0-9]{4}" and pats[3].case_insensitive
    assert parse(r"a\*b").root == Phrase(("a", "b"))  # an escaped * is not a wildcard


def test_or_groups_and_scoring_terms():
    q = parse('(globex OR "acme corp") invoice -draft')
    assert isinstance(q.root, And) and isinstance(q.root.items[0], Or)
    assert positive_terms(q.root) == ["globex", "acme", "corp", "invoice"]  # highlighted, embedded
    assert scored_units(q.root) == ["globex", "acme corp", "invoice"]  # an exact phrase is one scored unit
    assert scored_units(parse('"acme corp"~3 invoice').root) == ["acme", "corp", "invoice"]  # a proximity: its words
    assert scored_units(parse("acme -draft").root) == ["acme"]  # negated clauses are not scored
    assert scored_as_written(q.root) and scored_as_written(parse("a OR b -c").root)
    assert not scored_as_written(parse('"acme corp"~3 invoice').root)


@pytest.mark.parametrize(("query", "position"), [
    ("acme AND", 8), ("(acme", 5), ("title:acme", 0), ("acme^2", 0), ("acme~1", 0), ("[a TO b]", 0), ("-acme", 0),
    ("a OR -b", 0), ("&&", 0), ("a " + "x" * 5000, 4096), ('"a b"~99', 0),
])
def test_refusals_say_where(query, position):
    with pytest.raises(InvalidQuery) as caught:
        parse(query)
    assert caught.value.details["position"] == position and caught.value.details["expected"]


@pytest.mark.parametrize(("query", "plain"), [
    ("inv*", True), ("Café*", True), ("INV2*", True), ("in?oice", False), ("inv*e", False), ("*voice", False),
    ("i*v*", False), ("/inv.*/", False), ("inv\\*", None), ("inv**", False),
])
def test_a_plain_prefix_is_told_apart_from_other_patterns(query, plain):
    root = parse(query).root
    if plain is None:  # an escaped star is a literal: a word, no pattern
        assert not isinstance(root, Pattern)
        return
    assert isinstance(root, Pattern) and root.plain_prefix is plain, root
