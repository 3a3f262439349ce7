"""Matching a chunk's folded terms against an expanded query tree, on the terms text itself."""

import pytest

from engine.market.match import Positions, matches
from engine.market.query import And, Not, Or, Phrase, Prefix, Term, Terms

TEXT = "concat the cat category sat on the mat concat"


@pytest.mark.parametrize(("node", "expected"), [
    (Term("cat"), True),
    (Term("at"), False),  # inside "cat", "sat", "mat": a term is a whole term
    (Term("concat"), True),  # first and last term
    (Term("dog"), False),
    (Terms(("dog", "mat")), True),
    (Prefix("cat"), True),
    (Prefix("categ"), True),
    (Prefix("oncat"), False),  # a prefix starts a term
    (Prefix("con"), True),  # at the very start of the text
    (Phrase(("the", "cat")), True),
    (Phrase(("cat", "the")), False),
    (Phrase(("on", "the", "mat")), True),
    (Phrase(("mat", "concat")), True),  # the last two terms
    (Phrase(("the", "mat")), True),  # "the" twice: the second one
    (Phrase(("cat", "mat"), slop=5), True),
    (Phrase(("cat", "mat"), slop=4), False),
    (And((Term("cat"), Not(Term("dog")))), True),
    (And((Term("cat"), Not(Term("mat")))), False),
    (Or((Term("dog"), Prefix("sa"))), True),
])
def test_a_chunk_matches_as_the_index_would(node, expected):
    assert matches(node, Positions(TEXT)) is expected


def test_a_chunk_without_terms_matches_nothing():
    empty = Positions("")
    assert not matches(Term("a"), empty)
    assert not matches(Prefix(""), empty)
    assert not matches(Phrase(("a", "b")), empty)
    assert matches(Prefix(""), Positions("a"))
