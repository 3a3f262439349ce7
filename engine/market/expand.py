"""Wildcards and regular expressions, expanded over the index's term dictionary.

A pattern is matched against whole folded terms with RE2 (google-re2), whose automata run
in time linear in the term, so no pattern can run away (``(a+)+b`` is as cheap as ``ab``);
RE2 also caps the memory a compiled pattern may take. Only the dictionary range that the
pattern's literal start allows is read (``inv*`` reads the terms from ``inv`` to ``inw``);
a pattern starting with a wildcard reads the whole dictionary. More than
``search.max_expansions`` matching terms → 400 ``query_too_broad``.

A plain prefix (``abcd*``: one trailing ``*`` after letters and digits) is not expanded:
its terms are only counted (at most ``max_expansions + 1`` of them, over the same
dictionary range) for the bound, and the index matches it natively as one scored term
(:class:`engine.market.query.Prefix`: FTS5 ``"abcd"*``, tsquery ``'abcd':*``).

Syntax: ``*`` any run of characters, ``?`` one character; ``/…/`` is RE2 syntax (the
operators Lucene adds, ``@ & ~ <n-m> #``, are not supported: RE2 refuses most of them and
the query is then 400 ``invalid_query``), matched case-insensitively after accents are
stripped from it.
"""

from __future__ import annotations

import re2

from engine.errors import InvalidRequest
from engine.market.query import InvalidQuery, Node, Pattern, Prefix, Terms, patterns, substitute
from engine.store.base import Store

_RE2_MAX_MEM = 8 << 20


class QueryTooBroad(InvalidRequest):
    code = "query_too_broad"


def _upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``."""
    if not prefix:
        return None
    last = prefix[-1]
    if ord(last) >= 0x10FFFF:
        return _upper_bound(prefix[:-1])
    return prefix[:-1] + chr(ord(last) + 1)


def compile_pattern(pattern: Pattern) -> re2._Regexp:
    options = re2.Options()
    options.max_mem = _RE2_MAX_MEM
    options.case_sensitive = not pattern.case_insensitive
    options.log_errors = False
    try:
        return re2.compile(pattern.regex, options)
    except re2.error as exc:
        raise InvalidQuery(f"{pattern.source} is not a valid regular expression: {exc}", pattern.position, "an RE2 pattern") from None


def _too_broad(pattern: Pattern, max_expansions: int) -> QueryTooBroad:
    return QueryTooBroad(
        f"{pattern.source} matches more than {max_expansions} terms; make it more specific",
        {"position": pattern.position, "pattern": pattern.source, "max_expansions": max_expansions},
    )


async def expand_pattern(store: Store, pattern: Pattern, max_expansions: int) -> Terms:
    """The terms ``pattern`` matches, every one (a plain prefix too)."""
    regex = compile_pattern(pattern)
    found = await store.expand_terms(pattern.prefix, _upper_bound(pattern.prefix), lambda t: regex.fullmatch(t) is not None, max_expansions)
    if found is None:
        raise _too_broad(pattern, max_expansions)
    return Terms(tuple(found))


async def resolve_pattern(store: Store, pattern: Pattern, max_expansions: int) -> Terms | Prefix:
    """A plain prefix as a :class:`Prefix` once its terms are counted (none: ``Terms(())``,
    which matches nothing), any other pattern expanded."""
    if not pattern.plain_prefix:
        return await expand_pattern(store, pattern, max_expansions)
    count = await store.count_terms(pattern.prefix, _upper_bound(pattern.prefix), max_expansions + 1)
    if count > max_expansions:
        raise _too_broad(pattern, max_expansions)
    return Prefix(pattern.prefix) if count else Terms(())


async def expand(store: Store, nodes: list[Node], max_expansions: int) -> list[Node]:
    """``nodes`` with every pattern replaced by the terms it matches or, a plain prefix, by
    a :class:`Prefix` (each pattern once)."""
    expanded: dict[Pattern, Terms | Prefix] = {}
    for node in nodes:
        for pattern in patterns(node):
            if pattern not in expanded:
                expanded[pattern] = await resolve_pattern(store, pattern, max_expansions)
    return [substitute(node, expanded) for node in nodes]
