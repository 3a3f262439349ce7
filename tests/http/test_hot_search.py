"""``POST /v1/search`` answers the same on the plain-ASGI path (engine/http/hot.py) as through Quart.

A plain request (credentials in a header, a Content-Length, no query string, no
Idempotency-Key) takes the hot path; the same request with a chunked body goes through
Quart, where the route is declared. Every answer — results, snippets, pages and their
cursors, each kind of refusal, who may find what — must be the same either way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from engine.http.hot import HotRoutes
from tests.conftest import create_dataset, create_key, error_of, make_config
from tests.http.market_helpers import ADMIN, admin_headers, publish
from tests.http.test_hot_routes import chunked_body, envelope_data, post_counts, same_error

DOCS = {
    "a.txt": "Invoice 0425 from Globex Corporation. Total due: 1,234.00 EUR by 30 April. Lunch at the Café on Main Street.",
    "b.txt": "Acme invoice for the quarterly maintenance contract. Payment terms: net 30 days.",
    "c.txt": "Draft invoice INV2024 for Acme. Not yet approved. Vendor dispute about late delivery.",
    "d.txt": "Meeting notes: the vendor complained about the invoice being late. Acme will respond.",
}
JSON = {"Content-Type": "application/json"}
# what differs between two searches by design: their ids
PER_SEARCH = ("result_id",)


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN, **{"pipeline.retry_backoff_seconds": 0.05, "search.max_expansions": 6})


@pytest.fixture(name="world")
async def _world(client, alice, bob, service):
    """Alice's listed invoices; Bob's private and restricted datasets holding the same words."""
    admin = await admin_headers(client)
    listed = await create_dataset(client, alice.headers, name="Invoices", visibility="listed")
    await publish(client, service, admin, alice.headers, listed["dataset_id"], DOCS)
    out = {"listed": listed["dataset_id"]}
    for visibility in ("private", "restricted"):
        ds = await create_dataset(client, bob.headers, name=visibility, visibility=visibility)
        await publish(client, service, admin, bob.headers, ds["dataset_id"], {f"{visibility}.txt": f"acme invoice {visibility} secret"})
        out[visibility] = ds["dataset_id"]
    return out


Both = Callable[..., Awaitable[tuple[Any, Any]]]


@pytest.fixture(name="served")
def _served(monkeypatch) -> list[str]:
    """The paths of the requests the hot path answered, in order."""
    served: list[str] = []
    serve = HotRoutes._serve

    async def counting(self, hot, param, path, *args):
        served.append(path)
        return await serve(self, hot, param, path, *args)

    monkeypatch.setattr(HotRoutes, "_serve", counting)
    return served


@pytest.fixture(name="both")
def _both(client, served) -> Both:
    """``await both(headers, body)``: the same search plain (hot path) and chunked (Quart),
    checking which path answered each."""

    async def both(headers: dict[str, str], body: Any, url: str = "/v1/search") -> tuple[Any, Any]:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        h = {**JSON, **headers}
        before = len(served)
        plain = await client.post(url, headers=h, content=raw)
        chunked = await client.post(url, headers=h, content=chunked_body(raw))
        assert served[before:] == [url], "the plain request takes the hot path, the chunked one Quart"
        assert "content-length" in plain.request.headers
        assert chunked.request.headers.get("transfer-encoding") == "chunked"
        return plain, chunked

    return both


def same_page(plain, chunked) -> dict[str, Any]:
    """Both answered 200 with the same page (but for each search's own ids); the page."""
    assert plain.status_code == chunked.status_code == 200, (plain.text, chunked.text)
    pages = []
    for r in (plain, chunked):
        data = envelope_data(r)
        assert data["search_id"].startswith("srch_")
        assert all(x["result_id"].startswith("res_") for x in data["results"])
        pages.append(data)
    a, b = pages
    assert [{k: v for k, v in x.items() if k not in PER_SEARCH} for x in a["results"]] == \
        [{k: v for k, v in x.items() if k not in PER_SEARCH} for x in b["results"]]
    assert a["has_more"] == b["has_more"] and (a["next_cursor"] is None) == (b["next_cursor"] is None)
    return a


@pytest.mark.parametrize("mode", ["lexical", "vector", "hybrid"])
async def test_results_snippets_and_scores_are_the_same_on_both_paths(client, alice, world, mode, both):
    for query in ("invoice", "acme -draft", '"acme invoice"', "inv* OR globex", "cafe", "vendor late"):
        page = same_page(*await both(alice.headers, {"query": query, "mode": mode}))
        if mode == "lexical" and query == "invoice":
            assert sorted(x["original_filename"] for x in page["results"]) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    page = same_page(*await both(alice.headers, {"query": "cafe globex", "mode": "lexical"}))
    hit = page["results"][0]
    assert [hit["snippet"][s:e] for s, e in hit["highlights"]] == ["Globex", "Café"]


async def test_a_cursor_from_either_path_pages_on_the_other(client, alice, world, both):
    query = {"query": "invoice OR acme", "mode": "lexical", "limit": 2}
    plain, chunked = await both(alice.headers, query)
    first = same_page(plain, chunked)
    assert plain.json()["data"]["search_id"] != chunked.json()["data"]["search_id"]
    for r in (plain, chunked):
        cursor = r.json()["data"]["next_cursor"]
        more = await both(alice.headers, {**query, "cursor": cursor})
        second = same_page(*more)
        assert [x["rank"] for x in second["results"]] == [3, 4]
        # a later page continues its search: the same search id and result ids either way
        assert {m.json()["data"]["search_id"] for m in more} == {r.json()["data"]["search_id"]}
        assert more[0].json()["data"]["results"] == more[1].json()["data"]["results"]
        assert not {x["object_id"] for x in first["results"]} & {x["object_id"] for x in second["results"]}
    # a cursor is bound to its tenant and its query on both paths
    same_error(*await both(alice.headers, {**query, "query": "acme", "cursor": first["next_cursor"]}), 400, "invalid_request")


async def test_a_cursor_is_refused_for_another_tenant_on_both_paths(client, alice, bob, world, both):
    query = {"query": "invoice", "mode": "lexical", "limit": 1}
    plain, chunked = await both(alice.headers, query)
    for cursor in (plain.json()["data"]["next_cursor"], chunked.json()["data"]["next_cursor"]):
        error = same_error(*await both(bob.headers, {**query, "cursor": cursor}), 400, "invalid_request")
        assert error["details"]["fields"]["cursor"]


async def test_a_request_with_query_parameters_goes_through_quart(client, alice, world, served):
    """A cursor is bound to the list's query parameters (engine/http/app.py): a request that
    has some keeps Quart's binding, so its cursor pages there and nowhere else."""
    query = {"query": "invoice", "mode": "lexical", "limit": 1}
    h = {**JSON, **alice.headers}
    before = len(served)
    r = await client.post("/v1/search?view=full", headers=h, content=orjson.dumps(query))
    assert r.status_code == 200
    cursor = r.json()["data"]["next_cursor"]
    again = await client.post("/v1/search?view=full", headers=h, content=orjson.dumps({**query, "cursor": cursor}))
    assert again.status_code == 200 and again.json()["data"]["results"][0]["rank"] == 2
    assert served[before:] == []
    plain = await client.post("/v1/search", headers=h, content=orjson.dumps({**query, "cursor": cursor}))
    assert plain.status_code == 400 and error_of(plain)["details"]["fields"]["cursor"]
    assert served[before:] == ["/v1/search"]


async def test_refusals_are_the_same_on_both_paths(client, alice, world, both):
    h = alice.headers
    cases = [
        (h, b"{not json", 400, "invalid_request"),
        (h, b"", 400, "invalid_request"),
        (h, b"[1, 2]", 400, "invalid_request"),
        (h, {"query": 5}, 400, "invalid_request"),
        (h, {"mode": "lexical"}, 400, "invalid_request"),
        (h, {"query": "acme", "mode": "fuzzy"}, 400, "invalid_request"),
        (h, {"query": "acme", "limit": 0}, 400, "invalid_request"),
        (h, {"query": "acme", "limit": 101}, 400, "invalid_request"),
        (h, {"query": "acme", "extra": 1}, 400, "invalid_request"),
        (h, {"query": "a" * 4097}, 400, "invalid_request"),
        (h, {"query": "acme", "cursor": "garbage"}, 400, "invalid_request"),
        (h, {"query": "acme AND"}, 400, "invalid_query"),
        (h, {"query": "(acme"}, 400, "invalid_query"),
        (h, {"query": "*e"}, 400, "query_too_broad"),
        (h, {"query": "acme", "dataset_ids": ["dset_doesnotexist00000000"]}, 404, "not_found"),
        (h, {"query": "acme", "dataset_ids": "dset_x"}, 400, "invalid_request"),
        ({"Authorization": "Bearer not-a-token"}, {"query": "acme"}, 401, "unauthenticated"),
        ({"Authorization": "Basic abc"}, {"query": "acme"}, 401, "unauthenticated"),
        ({"X-API-Key": "ipto_nosuchkey"}, {"query": "acme"}, 401, "unauthenticated"),
    ]
    for headers, body, status, code in cases:
        same_error(*await both(headers, body), status, code)
    error = same_error(*await both(h, {"query": "acme AND"}), 400, "invalid_query")
    assert error["details"]["position"] == 8
    same_error(*await both({**h, "Content-Type": "text/plain"}, {"query": "acme"}), 400, "invalid_request")
    reader = await create_key(client, alice.headers, ["datasets:read"])
    error = same_error(*await both({"X-API-Key": reader["key"]}, {"query": "acme"}), 403, "forbidden")
    assert error["details"]["required_scope"] == "search:query"


async def test_another_tenants_content_stays_hidden_on_both_paths(client, alice, bob, world, both):
    for visibility in ("private", "restricted"):
        error = same_error(*await both(alice.headers, {"query": "acme", "dataset_ids": [world[visibility]]}), 404, "not_found")
        assert error["details"]["dataset_id"] == world[visibility]
    for mode in ("lexical", "hybrid"):
        page = same_page(*await both(alice.headers, {"query": "secret OR acme", "mode": mode}))
        assert {x["dataset_id"] for x in page["results"]} == {world["listed"]}
        assert all("secret" not in x["snippet"] for x in page["results"])
    page = same_page(*await both(bob.headers, {"query": "secret", "mode": "lexical"}))
    assert sorted(x["original_filename"] for x in page["results"]) == ["private.txt", "restricted.txt"]


async def test_grants_count_at_once_on_both_paths(client, alice, bob, world, both):
    query = {"query": "secret", "mode": "lexical"}
    assert same_page(*await both(alice.headers, query))["results"] == []
    r = await client.post(f"/v1/datasets/{world['restricted']}/grants", headers=bob.headers, json={"tenant_id": alice.tenant_id})
    assert r.status_code == 201, r.text
    page = same_page(*await both(alice.headers, query))
    assert [x["original_filename"] for x in page["results"]] == ["restricted.txt"]
    assert (await client.delete(f"/v1/datasets/{world['restricted']}/grants/{r.json()['data']['grant_id']}",
                                headers=bob.headers)).status_code == 200
    assert same_page(*await both(alice.headers, query))["results"] == []


async def test_allow_list_and_revoked_keys_on_both_paths(client, alice, bob, world, both):
    mine = await create_dataset(client, alice.headers, name="empty")
    key = await create_key(client, alice.headers, ["search:query"], dataset_access_mode="allow_list", dataset_ids=[mine["dataset_id"]])
    headers = {"X-API-Key": key["key"]}
    assert same_page(*await both(headers, {"query": "invoice", "mode": "lexical"}))["results"] == []
    same_error(*await both(headers, {"query": "invoice", "dataset_ids": [world["listed"]]}), 404, "not_found")
    assert (await client.delete(f"/v1/api-keys/{key['api_key_id']}", headers=alice.headers)).status_code in (200, 204)
    same_error(*await both(headers, {"query": "invoice"}), 401, "unauthenticated")


async def test_searches_on_the_hot_path_are_recorded_and_counted(client, alice, world, service):
    h = {**JSON, **alice.headers}
    r = await client.post("/v1/search", headers=h, content=orjson.dumps({"query": "invoice acme", "mode": "lexical", "limit": 2}))
    data = r.json()["data"]
    assert (await client.post("/v1/search", headers=h, content=b"{")).status_code == 400
    await service.services.recorder.flush()
    record = await service.services.store.get_search(alice.tenant_id, data["search_id"])
    assert record is not None and record.query == "invoice acme" and record.result_count == 2
    assert [i.rank for i in await service.services.store.list_impressions(data["search_id"])] == [1, 2]
    counted = await post_counts(client)
    assert counted[("/v1/search", "200")] >= 1 and counted[("/v1/search", "400")] == 1
