"""POST /v1/search: the query language, the three modes, snippets, pages, recording.

Runs on both store backends (IPTO_TEST_BACKEND); every expected ranking below must hold on
each, and the BM25 scores must equal the formula computed here from the corpus itself.
"""

from __future__ import annotations

import base64
import math

import orjson
import pytest

from engine.market.text import terms
from tests.conftest import create_dataset, error_of, make_config
from tests.http.market_helpers import ADMIN, admin_headers, found, publish, search

DOCS = {
    "a.txt": "Invoice 0425 from Globex Corporation. Total due: 1,234.00 EUR by 30 April. Lunch at the Café on Main Street.",
    "b.txt": "Acme invoice for the quarterly maintenance contract. Payment terms: net 30 days.",
    "c.txt": "Draft invoice INV2024 for Acme. Not yet approved. Vendor dispute about late delivery.",
    "d.txt": "Meeting notes: the vendor complained about the invoice being late. Acme will respond.",
    "e.txt": "Résumé of Zoë Ørsted, data engineer. Naïve Bayes and CAFÉ culture.",
}


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN, **{"pipeline.retry_backoff_seconds": 0.05, "search.max_expansions": 6})


@pytest.fixture(name="corpus")
async def _corpus(client, alice, service):
    ds = await create_dataset(client, alice.headers, name="Invoices", visibility="listed")
    ids = await publish(client, service, await admin_headers(client), alice.headers, ds["dataset_id"], DOCS)
    return {"dataset_id": ds["dataset_id"], "ids": ids}


async def test_boolean_operators_phrases_and_proximity(client, alice, corpus):
    lexical = {"mode": "lexical"}
    assert sorted(await found(client, alice.headers, "invoice", **lexical)) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert sorted(await found(client, alice.headers, "acme invoice", **lexical)) == ["b.txt", "c.txt", "d.txt"]
    assert sorted(await found(client, alice.headers, "acme AND invoice", **lexical)) == ["b.txt", "c.txt", "d.txt"]
    assert sorted(await found(client, alice.headers, "acme -draft", **lexical)) == ["b.txt", "d.txt"]
    assert sorted(await found(client, alice.headers, "acme AND NOT draft", **lexical)) == ["b.txt", "d.txt"]
    assert sorted(await found(client, alice.headers, "+acme +vendor", **lexical)) == ["c.txt", "d.txt"]
    assert sorted(await found(client, alice.headers, "(globex OR maintenance) invoice", **lexical)) == ["a.txt", "b.txt"]
    assert await found(client, alice.headers, '"acme invoice"', **lexical) == ["b.txt"]
    assert await found(client, alice.headers, '"vendor late"~4', **lexical) == ["c.txt"]  # 3 apart in c, 6 in d
    assert sorted(await found(client, alice.headers, '"late vendor"~6', **lexical)) == ["c.txt", "d.txt"]  # any order
    assert sorted(await found(client, alice.headers, '"vendor late"~0', **lexical)) == []  # ~0 is the exact phrase


async def test_wildcards_regexes_case_and_accents(client, alice, corpus):
    lexical = {"mode": "lexical"}
    everything = ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert sorted(await found(client, alice.headers, "inv*", **lexical)) == everything
    assert sorted(await found(client, alice.headers, "in?oice", **lexical)) == everything
    assert sorted(await found(client, alice.headers, "*voice", **lexical)) == everything
    assert await found(client, alice.headers, "/inv[0-9]{4}/", **lexical) == ["c.txt"]
    assert await found(client, alice.headers, "/INV2.*/", **lexical) == ["c.txt"]  # case-insensitive
    assert sorted(await found(client, alice.headers, "cafe", **lexical)) == ["a.txt", "e.txt"]
    assert sorted(await found(client, alice.headers, "CAFÉ", **lexical)) == ["a.txt", "e.txt"]
    assert await found(client, alice.headers, "resume zoe orsted naive", **lexical) == ["e.txt"]
    assert await found(client, alice.headers, "caf*", **lexical) == await found(client, alice.headers, "café*", **lexical)
    assert await found(client, alice.headers, "nothinglikethis*", **lexical) == []
    assert await found(client, alice.headers, "acme -nothinglikethis*", **lexical) != []


async def test_bm25_scores_are_the_formula_on_every_backend(client, alice, corpus):
    """FTS5's bm25 (k1 1.2, b 0.75) over the positive terms; PostgreSQL must give the same numbers."""
    docs = [terms(text) for text in DOCS.values()]  # one chunk each
    n, avgdl = len(docs), sum(map(len, docs)) / len(docs)

    def count(unit, doc):  # a term, or an exact phrase (one scored unit)
        return doc.count(unit) if isinstance(unit, str) else sum(doc[i:i + len(unit)] == list(unit) for i in range(len(doc)))

    def bm25(units, doc):
        score = 0.0
        for t in units:
            tf, hits = count(t, doc), sum(1 for d in docs if count(t, d))
            idf = max(math.log((n - hits + 0.5) / (hits + 0.5)), 0) or 1e-6
            score += idf * (tf * 2.2) / (tf + 1.2 * (0.25 + 0.75 * len(doc) / avgdl))
        return score

    for query, scored in [("acme invoice", ["acme", "invoice"]), ('"acme invoice" OR vendor', [("acme", "invoice"), "vendor"]),
                          ("invoice -draft", ["invoice"])]:
        r = await search(client, alice.headers, query, mode="lexical")
        results = r.json()["data"]["results"]
        assert results
        by_name = dict(zip(DOCS, docs, strict=True))
        expected = sorted((bm25(scored, by_name[x["original_filename"]]) for x in results), reverse=True)
        assert [x["score"] for x in results] == pytest.approx(expected, rel=1e-9)
        assert [x["rank"] for x in results] == list(range(1, len(results) + 1))


async def test_a_prefix_is_scored_as_one_term_on_every_backend(client, alice, corpus):
    """``inv*`` is matched by the index itself (FTS5 ``"inv"*``, tsquery ``'inv':*``) and
    scored as one term: its occurrences summed, the IDF of the chunks holding any of its
    terms; with a word beside it, the two are summed. The same numbers on each backend."""
    docs = dict(zip(DOCS, (terms(text) for text in DOCS.values()), strict=True))
    n, avgdl = len(docs), sum(map(len, docs.values())) / len(docs)

    def part(doc, tf, hits):
        idf = max(math.log((n - hits + 0.5) / (hits + 0.5)), 0) or 1e-6
        return idf * (tf * 2.2) / (tf + 1.2 * (0.25 + 0.75 * len(doc) / avgdl))

    def score(doc, prefix, word=None):
        total = part(doc, sum(t.startswith(prefix) for t in doc), sum(any(t.startswith(prefix) for t in d) for d in docs.values()))
        if word is not None:
            total += part(doc, doc.count(word), sum(word in d for d in docs.values()))
        return total

    for query, prefix, word in [("inv*", "inv", None), ("inv* acme", "inv", "acme"), ("de* OR vendor", "de", "vendor")]:
        results = (await search(client, alice.headers, query, mode="lexical")).json()["data"]["results"]
        assert results, query
        for x in results:
            doc = docs[x["original_filename"]]
            if word is not None and " OR " in query:
                expected = (score(doc, prefix) if any(t.startswith(prefix) for t in doc) else 0.0) + (
                    part(doc, doc.count(word), sum(word in d for d in docs.values())) if word in doc else 0.0)
            else:
                expected = score(doc, prefix, word)
            assert x["score"] == pytest.approx(expected, rel=1e-9), (query, x["original_filename"])
        assert [x["score"] for x in results] == sorted((x["score"] for x in results), reverse=True)
    # c.txt holds "invoice" and "inv2024": two occurrences of the prefix
    assert (await found(client, alice.headers, "inv*", mode="lexical"))[0] == "c.txt"


async def test_an_exact_phrase_is_scored_as_one_unit_on_every_backend(client, alice, corpus, service):
    """An exact phrase is one scored unit, as FTS5 scores it: its frequency is how often the
    phrase occurs in the chunk, its IDF that of the chunks holding the phrase. A
    proximity scores as its words. The same numbers on each backend."""
    extra = {"f.txt": "Late invoice, late invoice again: the vendor sent a late invoice. Invoice late, invoice.",
             "g.txt": "Late invoice. Late late late, invoice invoice invoice invoice invoice."}
    await publish(client, service, await admin_headers(client), alice.headers, corpus["dataset_id"], extra)
    docs = {name: terms(text) for name, text in {**DOCS, **extra}.items()}  # one chunk each
    n, avgdl = len(docs), sum(map(len, docs.values())) / len(docs)

    def count(unit, doc):
        if isinstance(unit, str):
            return doc.count(unit)
        return sum(doc[i:i + len(unit)] == list(unit) for i in range(len(doc)))

    def bm25(units, doc):
        score = 0.0
        for unit in units:
            tf, hits = count(unit, doc), sum(count(unit, d) > 0 for d in docs.values())
            idf = max(math.log((n - hits + 0.5) / (hits + 0.5)), 0) or 1e-6
            score += idf * (tf * 2.2) / (tf + 1.2 * (0.25 + 0.75 * len(doc) / avgdl))
        return score

    phrase = ("late", "invoice")
    for query, units in [('"late invoice"', [phrase]), ('"late invoice" vendor', [phrase, "vendor"]),
                         ('"late invoice" OR acme', [phrase, "acme"]), ('"late invoice" -draft', [phrase]),
                         ('"late invoice"~3', ["late", "invoice"]), ('"late invoice"~3 "late invoice"', ["late", "invoice", phrase])]:
        results = (await search(client, alice.headers, query, mode="lexical")).json()["data"]["results"]
        assert results, query
        for x in results:
            assert x["score"] == pytest.approx(bm25(units, docs[x["original_filename"]]), rel=1e-9), (query, x["original_filename"])
        assert [x["score"] for x in results] == sorted((x["score"] for x in results), reverse=True)
    # g.txt is shorter and holds the words as often or more, but the phrase only once: f.txt
    # (four times) ranks first, where scoring the words (the proximity) puts g.txt first.
    assert await found(client, alice.headers, '"late invoice"', mode="lexical") == ["f.txt", "g.txt"]
    assert (await found(client, alice.headers, '"late invoice"~3', mode="lexical"))[0] == "g.txt"


async def test_a_prefix_bound_counts_its_terms(client, alice, corpus, service):
    """max_expansions is 6 here: a prefix of 6 terms is searched, of 7 is 400 query_too_broad."""
    assert sorted(await found(client, alice.headers, "d*", mode="lexical")) == ["a.txt", "b.txt", "c.txt", "e.txt"]
    assert (await search(client, alice.headers, "d*", mode="hybrid")).status_code == 200
    await publish(client, service, await admin_headers(client), alice.headers, corpus["dataset_id"], {"f.txt": "Dune."})
    for mode in ("lexical", "vector", "hybrid"):
        r = await search(client, alice.headers, "d*", mode=mode)
        assert r.status_code == 400 and error_of(r)["code"] == "query_too_broad", (mode, r.text)
        assert error_of(r)["details"] == {"position": 0, "pattern": "d*", "max_expansions": 6}
    r = await search(client, alice.headers, "acme -d*")  # a negated prefix is bounded too
    assert r.status_code == 400 and error_of(r)["code"] == "query_too_broad"
    assert (await search(client, alice.headers, "du*", mode="lexical")).status_code == 200


async def test_a_prefix_highlights_the_words_it_matched(client, alice, corpus):
    for query, name, marked in [("glob*", "a.txt", ["Globex"]), ("caf*", "e.txt", ["CAFÉ"]), ("caf*", "a.txt", ["Café"]),
                                ("inv*", "c.txt", ["invoice", "INV2024"]), ("orst* naiv*", "e.txt", ["Ørsted", "Naïve"])]:
        results = (await search(client, alice.headers, query, mode="lexical")).json()["data"]["results"]
        (hit,) = [x for x in results if x["original_filename"] == name]
        assert [hit["snippet"][s:e] for s, e in hit["highlights"]] == marked, query


async def test_snippets_highlight_the_matched_words_as_written(client, alice, corpus):
    r = await search(client, alice.headers, "cafe globex", mode="lexical")
    (hit,) = r.json()["data"]["results"]
    assert hit["original_filename"] == "a.txt" and hit["mime_type"] == "text/plain" and hit["chunk_index"] == 0
    assert hit["object_id"] == corpus["ids"]["a.txt"] and hit["dataset_id"] == corpus["dataset_id"]
    assert hit["result_id"].startswith("res_")
    marked = [hit["snippet"][s:e] for s, e in hit["highlights"]]
    assert marked == ["Globex", "Café"]


async def test_pages_are_stable_and_complete(client, alice, corpus):
    seen, cursor, pages = [], None, 0
    search_ids = set()
    while True:
        r = await search(client, alice.headers, "invoice OR acme OR cafe", mode="lexical", limit=2, cursor=cursor)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        search_ids.add(data["search_id"])
        seen += [(x["rank"], x["original_filename"]) for x in data["results"]]
        pages += 1
        cursor = data["next_cursor"]
        assert data["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert pages == 3 and len(search_ids) == 1
    assert [rank for rank, _ in seen] == [1, 2, 3, 4, 5]
    assert sorted(name for _, name in seen) == sorted(DOCS)
    whole = await found(client, alice.headers, "invoice OR acme OR cafe", mode="lexical", limit=10)
    assert [name for _, name in seen] == whole


async def test_vector_and_hybrid_keep_the_constraints(client, alice, corpus):
    vector = await found(client, alice.headers, "payment terms of a maintenance contract", mode="vector")
    assert vector[0] == "b.txt" and len(vector) == 5
    assert "c.txt" not in await found(client, alice.headers, "invoice -draft", mode="vector")
    assert "c.txt" not in await found(client, alice.headers, "invoice -draft", mode="hybrid")
    assert await found(client, alice.headers, "+globex payment", mode="vector") == ["a.txt"]
    assert await found(client, alice.headers, "+globex payment", mode="hybrid") == ["a.txt"]
    hybrid = await found(client, alice.headers, "contract payment")
    assert hybrid[0] == "b.txt" and set(hybrid) == set(DOCS)  # hybrid is the default mode; vector adds what lexical lacks
    r = await search(client, alice.headers, "payment terms", mode="vector")
    scores = [x["score"] for x in r.json()["data"]["results"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)


async def test_searches_and_impressions_are_recorded(client, alice, corpus, service):
    r = await search(client, alice.headers, "invoice acme", mode="lexical", limit=2)
    data = r.json()["data"]
    more = await search(client, alice.headers, "invoice acme", mode="lexical", limit=2, cursor=data["next_cursor"])
    assert more.status_code == 200
    await service.services.recorder.flush()
    store = service.services.store
    record = await store.get_search(alice.tenant_id, data["search_id"])
    assert record.query == "invoice acme" and record.mode == "lexical" and record.result_count == 3
    assert record.keywords == ("invoice", "acme") and record.api_key_id is None and record.user_id == alice.user_id
    impressions = await store.list_impressions(data["search_id"])
    assert [i.rank for i in impressions] == [1, 2, 3]
    assert {i.dataset_id for i in impressions} == {corpus["dataset_id"]}
    assert {i.provider_tenant_id for i in impressions} == {alice.tenant_id} == {i.buyer_tenant_id for i in impressions}


@pytest.mark.parametrize(("query", "position"), [("acme AND", 8), ("(acme", 5), ("acme)", 4), ('"acme', 0)])
async def test_a_query_that_does_not_parse_is_400_with_its_position(client, alice, query, position):
    r = await search(client, alice.headers, query)
    assert r.status_code == 400
    err = error_of(r)
    assert err["code"] == "invalid_query" and err["details"]["expected"]
    assert err["details"]["position"] == position


@pytest.mark.parametrize("query", ["title:acme", "acme^2", "acme~2", "[a TO b]", "-acme", "NOT acme", "a OR -b", "&&", "/(/", "*", "  "])
async def test_unsupported_or_meaningless_queries_are_400(client, alice, query):
    r = await search(client, alice.headers, query)
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == "invalid_query"


async def test_bad_requests_never_500(client, alice, bob, corpus):
    assert error_of(await search(client, alice.headers, "a" * 4097))["code"] in ("invalid_request", "invalid_query")
    assert (await search(client, alice.headers, "acme", mode="fuzzy")).status_code == 400
    assert (await search(client, alice.headers, "acme", limit=0)).status_code == 400
    assert (await search(client, alice.headers, "acme", limit=101)).status_code == 400
    r = await search(client, alice.headers, "acme", cursor="garbage")
    assert r.status_code == 400 and error_of(r)["details"]["fields"]["cursor"]
    first = (await search(client, alice.headers, "invoice", limit=1)).json()["data"]
    r = await search(client, alice.headers, "acme", limit=1, cursor=first["next_cursor"])  # another query's cursor
    assert r.status_code == 400
    r = await search(client, bob.headers, "invoice", limit=1, cursor=first["next_cursor"])  # another tenant's cursor
    assert r.status_code == 400
    sealed = first["next_cursor"]
    middle = len(sealed) // 2
    forged = sealed[:middle] + ("A" if sealed[middle] != "A" else "B") + sealed[middle + 1:]  # one character altered
    r = await search(client, alice.headers, "invoice", limit=1, cursor=forged)
    assert r.status_code == 400 and error_of(r)["details"]["fields"]["cursor"]
    unsealed = base64.urlsafe_b64encode(orjson.dumps({"v": 1, "s": "srch_x", "r": 500, "k": [1.0, 1], "f": "x"})).decode()
    r = await search(client, alice.headers, "invoice", limit=1, cursor=unsealed)  # readable fields, no seal
    assert r.status_code == 400
    r = await search(client, alice.headers, "invoice", limit=1, cursor=first["next_cursor"])  # the real one still works
    assert r.status_code == 200 and r.json()["data"]["results"][0]["rank"] == 2
    r = await search(client, alice.headers, "*e")  # the, due, cafe, late, resume, zoe, naive, … : more than 6
    assert r.status_code == 400 and error_of(r)["code"] == "query_too_broad"
    assert (await client.post("/v1/search", headers=alice.headers, json={"query": 5})).status_code == 400
    assert (await client.post("/v1/search", headers=alice.headers, content=b"{")).status_code == 400
    r = await search(client, alice.headers, "/(a+)+b/")  # RE2: linear time, no runaway
    assert r.status_code == 200


@pytest.mark.parametrize("query", [
    "invoice", "acme -late", "invoice AND (acme OR globex)", '"acme invoice"', '"invoice late"~3', '"late invoice"~3',
    '"invoice late"~2', "invoice NOT (draft OR vendor)", "inv*", "cafe -resume", '"net 30 days"', '"30 net"~1',
    "acme -inv2*", "(de* OR globex) -vendor", "inv* AND ac*",
])
async def test_constraints_checked_on_candidates_agree_with_the_index(client, alice, corpus, service, query):
    """What vector search checks on its candidates (filter_matching) is exactly what the
    index (FTS5 / tsquery) matches, phrases and proximity included, on every backend."""
    from engine.market.expand import expand
    from engine.market.query import Or, Term, parse

    store = service.services.store
    (ds,) = [d for d in await store.searchable_datasets(alice.tenant_id) if d.id == corpus["dataset_id"]]
    everything = Or(tuple(Term(t) for t in sorted({t for text in DOCS.values() for t in terms(text)})))
    all_ids = await store.matching_ids(everything, [ds.seq])
    (node,) = await expand(store, [parse(query).root], 1000)
    expected = await store.matching_ids(node, [ds.seq])
    assert expected, query  # each query matches something, and not everything
    assert await store.filter_matching(sorted(all_ids), node) == expected
    assert await store.filter_matching(sorted(expected)[:1], node) == set(sorted(expected)[:1])


async def test_a_search_finds_only_the_datasets_in_its_scope(client, alice, bob, service):
    """Chunk ids run by dataset, and a search's scope is a range of them: a dataset inside
    that range the caller may not search (another tenant's private one) or left out of
    ``dataset_ids`` is never found, in any mode or through a constraint, on every backend."""
    admin = await admin_headers(client)
    made = {}
    for name, owner, visibility in (("first", alice, "listed"), ("middle", bob, "private"), ("last", alice, "listed"),
                                    ("after", alice, "listed")):
        ds = await create_dataset(client, owner.headers, name=name, visibility=visibility)
        await publish(client, service, admin, owner.headers, ds["dataset_id"], {f"{name}.txt": f"Quarterly ledger of the {name} books."})
        made[name] = ds["dataset_id"]
    everything_but_bobs = ["after.txt", "first.txt", "last.txt"]
    for mode in ("lexical", "vector", "hybrid"):
        assert sorted(await found(client, alice.headers, "ledger", mode=mode)) == everything_but_bobs, mode
        assert sorted(await found(client, alice.headers, "+ledger -nothing", mode=mode)) == everything_but_bobs, mode
        assert sorted(await found(client, bob.headers, "ledger", mode=mode)) == ["after.txt", "first.txt", "last.txt", "middle.txt"]
        only = [made["first"], made["after"]]  # "last" lies between them
        assert sorted(await found(client, alice.headers, "ledger", mode=mode, dataset_ids=only)) == ["after.txt", "first.txt"], mode
        assert await found(client, alice.headers, "ledger", mode=mode, dataset_ids=[made["last"]]) == ["last.txt"], mode
    r = await search(client, alice.headers, "ledger", dataset_ids=[made["middle"]])
    assert r.status_code == 404
    # the store's own scope, beneath the search's check of each hit's dataset
    from engine.market.query import Term
    from engine.store.search import dataset_seq_of

    store = service.services.store
    seq = {d.id: d.seq for d in await store.searchable_datasets(bob.tenant_id)}
    ledger = Term("ledger")
    for names in (["first", "after"], ["first", "last", "after"], ["last"], ["middle"], ["first", "middle", "last", "after"]):
        seqs = [seq[made[n]] for n in names]
        assert {dataset_seq_of(i) for i in await store.matching_ids(ledger, seqs)} == set(seqs), names
        assert {dataset_seq_of(i) for i, _ in await store.lexical_search(ledger, seqs, 10)} == set(seqs), names
    assert await store.matching_ids(ledger, []) == set() and await store.lexical_search(ledger, [], 10) == []
