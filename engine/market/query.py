"""The search query language: Lucene's classic syntax, parsed by luqum, into a small tree.

luqum (a PLY grammar of exactly this syntax) parses; this module turns its tree into
the nodes below, checks what the engine supports, and folds every word the way the
index does (:mod:`engine.market.text`)::

    Term("invoice")                      invoice, +invoice
    Phrase(("acme", "invoice"), slop=0)  "acme invoice", and a word the index splits (e-mail)
    Phrase(("acme", "invoice"), slop=5)  "acme invoice"~5: every two words within 5 positions
    Pattern(…)                           inv*, in?oice, *voice, /inv[0-9]{4}/ (whole term)
    And(…), Or(…), Not(…)                AND / juxtaposition, OR, NOT and -

Rules the parser enforces (each a 400 ``invalid_query`` with the position):
a negated clause stands beside a positive one in a conjunction (``a -b``, ``a AND NOT b``),
never alone or inside an ``OR``; fields, ranges, boosts and fuzzy terms are not supported;
a word must hold a letter or digit. ``+`` marks a clause required and, like the operands of
an explicit ``AND``, it is a *constraint*: vector and hybrid search keep only chunks that
satisfy every constraint and none of the negated clauses (:attr:`Query.required`,
:attr:`Query.excluded`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import luqum.tree as lt
from luqum.exceptions import IllegalCharacterError, ParseError, ParseSyntaxError
from luqum.thread import parse as luqum_parse

from engine.errors import InvalidRequest
from engine.market.text import MAX_TERM_CHARS, fold_run, strip_accents, terms

MAX_QUERY_BYTES = 4096
MAX_DEPTH = 32
MAX_LEAVES = 64
MAX_SLOP = 32
MAX_PROXIMITY_TERMS = 8


class InvalidQuery(InvalidRequest):
    """400 ``invalid_query``: ``details = {position, expected}``."""

    code = "invalid_query"

    def __init__(self, message: str, position: int, expected: str) -> None:
        super().__init__(message, {"position": position, "expected": expected})


# -- the tree ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Term:
    term: str


@dataclass(frozen=True)
class Phrase:
    terms: tuple[str, ...]
    slop: int = 0  # 0: adjacent in order; N: every two terms at most N positions apart, any order


@dataclass(frozen=True)
class Pattern:
    """A wildcard or regular expression, matched against whole folded terms."""

    source: str  # as written
    regex: str  # RE2 syntax, anchored by fullmatch
    prefix: str  # literal folded start every matching term has ("" = scan every term)
    position: int
    case_insensitive: bool = False

    @property
    def plain_prefix(self) -> bool:
        """Whether this is a plain prefix (``abcd*``: letters and digits, one trailing
        ``*``): the index matches it natively (FTS5 ``"abcd"*``, tsquery ``'abcd':*``)
        instead of the engine expanding it over the dictionary."""
        return (not self.case_insensitive and bool(self.prefix) and len(self.prefix) < MAX_TERM_CHARS
                and self.regex == re.escape(self.prefix) + ".*")


@dataclass(frozen=True)
class Prefix:
    """A plain prefix after its bound was checked: every term starting with ``prefix``,
    scored as one term (BM25 over the chunk's occurrences of all of them, the IDF of the
    chunks holding any of them: FTS5's own scoring of ``"abcd"*``)."""

    prefix: str


@dataclass(frozen=True)
class Terms:
    """A pattern after expansion: any of these terms (none: matches nothing)."""

    terms: tuple[str, ...]


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Term | Phrase | Pattern | Prefix | Terms | And | Or | Not


@dataclass(frozen=True)
class Query:
    """A parsed query: the whole tree, its constraints, and the words it searches for."""

    source: str
    root: Node
    required: tuple[Node, ...] = ()  # + clauses and explicit AND operands at the top
    excluded: tuple[Node, ...] = ()  # - / NOT clauses at the top
    words: tuple[str, ...] = field(default=())  # folded words of the positive clauses (no patterns)
    vector_text: str = ""  # what the vector side embeds: the query's positive words, as written


# -- parsing -----------------------------------------------------------------------------

_POSITION = re.compile(r"position (\d+)")  # reads luqum's error message, not the query


def _error_position(exc: ParseError, query: str) -> int:
    found = _POSITION.search(str(exc))
    return int(found.group(1)) if found else len(query)


@lru_cache(maxsize=1024)
def parse(query: str) -> Query:
    """Parse ``query``; raise :class:`InvalidQuery` (with the position) when it does not parse.
    The last 1,024 queries that parsed are kept (a :class:`Query` is immutable): a repeated
    query, and every page after the first, skips luqum (~0.2 ms)."""
    if len(query.encode()) > MAX_QUERY_BYTES:
        raise InvalidQuery(f"the query is longer than {MAX_QUERY_BYTES} bytes", MAX_QUERY_BYTES, f"at most {MAX_QUERY_BYTES} bytes")
    if not query.strip():
        raise InvalidQuery("the query is empty", 0, "a term")
    try:
        tree = luqum_parse(query)
    except IllegalCharacterError as exc:
        raise InvalidQuery(f"the query does not parse: {exc}", _error_position(exc, query), "a term or an operator") from None
    except ParseSyntaxError as exc:
        position = _error_position(exc, query)
        expected = "a term, a phrase or '('" if position >= len(query) else "a term, a phrase, an operator or ')'"
        raise InvalidQuery(f"the query does not parse: {str(exc).split(': ', 1)[-1]}", position, expected) from None
    except (ParseError, RecursionError) as exc:
        raise InvalidQuery(f"the query does not parse: {exc}", 0, "a term") from None
    builder = _Builder(query)
    root = builder.node(tree, 0)
    _check_negations(root, top=True, position=0)
    required, excluded = _constraints(tree, builder)
    words = tuple(dict.fromkeys(w for w in _positive_words(root)))
    return Query(query, root, required, excluded, words, " ".join(builder.plain_words))


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.leaves = 0
        self.plain_words: list[str] = []  # positive words as written (for the vector side)
        self.memo: dict[int, Node] = {}

    def node(self, item: lt.Item, depth: int, negated: bool = False) -> Node:
        found = self.memo.get(id(item))
        if found is not None:
            return found
        built = self._node(item, depth, negated)
        self.memo[id(item)] = built
        return built

    def _node(self, item: lt.Item, depth: int, negated: bool) -> Node:
        pos = getattr(item, "pos", 0) or 0
        if depth > MAX_DEPTH:
            raise InvalidQuery(f"the query nests deeper than {MAX_DEPTH} levels", pos, "fewer parentheses")
        if isinstance(item, lt.Group):
            return self.node(item.expr, depth + 1, negated)
        if isinstance(item, lt.Plus):
            return self.node(item.a, depth + 1, negated)
        if isinstance(item, (lt.Not, lt.Prohibit)):
            return Not(self.node(item.a, depth + 1, not negated))
        if isinstance(item, (lt.AndOperation, lt.UnknownOperation)):
            return And(tuple(self.node(child, depth + 1, negated) for child in item.children))
        if isinstance(item, lt.OrOperation):
            return Or(tuple(self.node(child, depth + 1, negated) for child in item.children))
        if isinstance(item, lt.Proximity):
            return self._phrase(item.term, pos, item.degree, negated)
        if isinstance(item, lt.Phrase):
            return self._phrase(item, pos, 0, negated)
        if isinstance(item, lt.Regex):
            return self._regex(item, pos)
        if isinstance(item, lt.Word):
            return self._word(item, pos, negated)
        unsupported = {
            lt.SearchField: "field queries (name:value) are not supported",
            lt.Range: "ranges ([a TO b]) are not supported",
            lt.Boost: "boosts (term^2) are not supported",
            lt.Fuzzy: "fuzzy terms (term~2) are not supported; a phrase takes ~N",
        }
        for cls, message in unsupported.items():
            if isinstance(item, cls):
                raise InvalidQuery(message, pos, "a term, a phrase or a pattern")
        raise InvalidQuery(f"unsupported query element {type(item).__name__}", pos, "a term")

    def _count(self, pos: int) -> None:
        self.leaves += 1
        if self.leaves > MAX_LEAVES:
            raise InvalidQuery(f"the query has more than {MAX_LEAVES} terms", pos, "fewer terms")

    def _word(self, item: lt.Word, pos: int, negated: bool) -> Node:
        raw = item.value
        self._count(pos)
        if _has_wildcard(raw):
            return self._wildcard(raw, pos)
        text = _unescape(raw)
        words = terms(text)
        if not words:
            raise InvalidQuery(f"{raw!r} holds no letter or digit to search for", pos, "a term")
        if not negated:
            self.plain_words.append(text)
        return Term(words[0]) if len(words) == 1 else Phrase(tuple(words))

    def _phrase(self, item: lt.Phrase, pos: int, slop: object, negated: bool) -> Node:
        self._count(pos)
        text = _unescape(item.value[1:-1])
        words = terms(text)
        if not words:
            raise InvalidQuery("the phrase holds no letter or digit to search for", pos, "a phrase with words")
        try:
            degree = int(float(slop))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidQuery("a proximity takes a whole number: \"a b\"~5", pos, "~N") from None
        if not 0 <= degree <= MAX_SLOP:
            raise InvalidQuery(f"a proximity is 0 to {MAX_SLOP} positions", pos, f"~0 to ~{MAX_SLOP}")
        if degree and len(words) > MAX_PROXIMITY_TERMS:
            raise InvalidQuery(f"a proximity holds at most {MAX_PROXIMITY_TERMS} words", pos, "fewer words")
        if not negated:
            self.plain_words.append(text)
        if len(words) == 1:
            return Term(words[0])
        return Phrase(tuple(words), degree)

    def _wildcard(self, raw: str, pos: int) -> Pattern:
        parts: list[str] = []
        prefix: list[str] = []
        literal_run = True
        i = 0
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw):
                ch, i = raw[i + 1], i + 1
                literal = True
            else:
                literal = ch not in "*?"
            if not literal:
                parts.append(".*" if ch == "*" else ".")
                literal_run = False
            else:
                folded = fold_run(ch)
                if not folded:
                    raise InvalidQuery(
                        f"a wildcard term holds letters, digits, * and ? only (found {ch!r})", pos + i, "a letter, a digit, * or ?"
                    )
                for piece in folded:
                    parts.append(re.escape(piece))
                    if literal_run:
                        prefix.append(piece)
            i += 1
        if "".join(prefix) == "" and all(p == ".*" for p in parts):
            raise InvalidQuery("a wildcard needs at least one letter or digit", pos, "a letter or digit beside *")
        return Pattern(raw, "".join(parts), "".join(prefix)[:MAX_TERM_CHARS], pos)

    def _regex(self, item: lt.Regex, pos: int) -> Pattern:
        self._count(pos)
        body = strip_accents(item.value[1:-1])
        if not body:
            raise InvalidQuery("an empty regular expression", pos, "a pattern between slashes")
        return Pattern(item.value, body, "", pos, case_insensitive=True)


def _has_wildcard(raw: str) -> bool:
    escaped = False
    for ch in raw:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "*?":
            return True
    return False


def _unescape(raw: str) -> str:
    out, escaped = [], False
    for ch in raw:
        if escaped or ch != "\\":
            out.append(ch)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def _check_negations(node: Node, *, top: bool, position: int) -> None:
    """A NOT needs a positive sibling in a conjunction; it never stands alone or in an OR."""
    if isinstance(node, Not):
        raise InvalidQuery("a negated clause needs a positive clause beside it (a -b, a AND NOT b)", position, "a positive term")
    if isinstance(node, And):
        if all(isinstance(item, Not) for item in node.items):
            raise InvalidQuery("a negated clause needs a positive clause beside it (a -b, a AND NOT b)", position, "a positive term")
        for item in node.items:
            _check_negations(item.item if isinstance(item, Not) else item, top=False, position=position)
            if isinstance(item, Not) and isinstance(item.item, Not):
                raise InvalidQuery("a double negation is not supported", position, "a term")
    elif isinstance(node, Or):
        for item in node.items:
            if isinstance(item, Not):
                raise InvalidQuery("OR cannot take a negated clause; write (a OR b) -c", position, "a positive clause")
            _check_negations(item, top=False, position=position)


def _constraints(tree: lt.Item, builder: _Builder) -> tuple[tuple[Node, ...], tuple[Node, ...]]:
    """The top level's ``+`` clauses and explicit AND operands (required) and its
    ``-``/``NOT`` clauses (excluded)."""
    while isinstance(tree, lt.Group):
        tree = tree.expr
    required: list[Node] = []
    excluded: list[Node] = []
    children = tree.children if isinstance(tree, (lt.AndOperation, lt.UnknownOperation)) else (tree,)
    for child in children:
        inner = child
        while isinstance(inner, lt.Group):
            inner = inner.expr
        built = builder.memo[id(child)]
        if isinstance(inner, (lt.Not, lt.Prohibit)):
            assert isinstance(built, Not)
            excluded.append(built.item)
        elif isinstance(inner, lt.Plus) or isinstance(tree, lt.AndOperation):
            required.append(built)
    return tuple(required), tuple(excluded)


def _positive_words(node: Node) -> Iterator[str]:
    if isinstance(node, Term):
        yield node.term
    elif isinstance(node, Phrase):
        yield from node.terms
    elif isinstance(node, (And, Or)):
        for item in node.items:
            if not isinstance(item, Not):
                yield from _positive_words(item)


def patterns(node: Node) -> Iterator[Pattern]:
    """Every wildcard and regular expression in the tree."""
    if isinstance(node, Pattern):
        yield node
    elif isinstance(node, (And, Or)):
        for item in node.items:
            yield from patterns(item)
    elif isinstance(node, Not):
        yield from patterns(node.item)


def substitute(node: Node, expanded: dict[Pattern, Terms | Prefix]) -> Node:
    """The tree with every pattern replaced by its expansion, simplified: a pattern that
    matched nothing makes its conjunction match nothing and drops out of a disjunction
    or a negation."""
    if isinstance(node, Pattern):
        return expanded[node]
    if isinstance(node, Not):
        return Not(substitute(node.item, expanded))
    if isinstance(node, (And, Or)):
        items = [substitute(item, expanded) for item in node.items]
        if isinstance(node, And):
            if any(_empty(item) for item in items):
                return Terms(())
            items = [item for item in items if not (isinstance(item, Not) and _empty(item.item))]
            return items[0] if len(items) == 1 else And(tuple(items))
        items = [item for item in items if not _empty(item)]
        if not items:
            return Terms(())
        return items[0] if len(items) == 1 else Or(tuple(items))
    return node


def _empty(node: Node) -> bool:
    return isinstance(node, Terms) and not node.terms


def is_empty(node: Node) -> bool:
    """Whether the (expanded) tree can match nothing."""
    return _empty(node)


def prefix_term(prefix: str) -> str:
    """How :func:`scored_units` writes a :class:`Prefix` (a term never ends with ``*``)."""
    return prefix + "*"


def phrase_unit(terms: Sequence[str]) -> str:
    """How :func:`scored_units` writes an exact phrase: its terms joined by spaces (a term
    never holds a space)."""
    return " ".join(terms)


def positive_terms(node: Node) -> list[str]:
    """Every term of every positive leaf (phrases' words and expansions included, negated
    clauses left out; a :class:`Prefix` written ``abcd*``): what snippets highlight and a
    vector search embeds."""
    if isinstance(node, Term):
        return [node.term]
    if isinstance(node, Prefix):
        return [prefix_term(node.prefix)]
    if isinstance(node, (Phrase, Terms)):
        return list(node.terms)
    if isinstance(node, (And, Or)):
        return [t for item in node.items if not isinstance(item, Not) for t in positive_terms(item)]
    return []


def scored_units(node: Node) -> list[str]:
    """The multiset of units a match is scored by (BM25 sums over it), negated clauses left
    out: a term; each term of an expansion; a :class:`Prefix` as one unit (``abcd*``,
    :func:`prefix_term`); an exact phrase as one unit (``"a b"``, :func:`phrase_unit`: its
    frequency the phrase's occurrences in the chunk, its IDF that of the chunks holding the
    phrase: FTS5's scoring of a phrase, whose frequency Lucene counts alike); a proximity ``"a b"~N`` as its words."""
    if isinstance(node, Phrase) and node.slop == 0:
        return [phrase_unit(node.terms)]
    if isinstance(node, (And, Or)):
        return [t for item in node.items if not isinstance(item, Not) for t in scored_units(item)]
    return positive_terms(node)


def scored_as_written(node: Node) -> bool:
    """Whether every positive leaf is a term, an expansion, a prefix or an exact phrase:
    then FTS5's own bm25 over the query's expression is the score (a proximity is scored
    as its words, which its ``NEAR`` group does not give)."""
    if isinstance(node, Phrase):
        return node.slop == 0
    if isinstance(node, (And, Or)):
        return all(isinstance(item, Not) or scored_as_written(item) for item in node.items)
    return True


def highlight_terms(node: Node) -> set[str]:
    return set(positive_terms(node))
