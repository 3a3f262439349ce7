"""Buyer activity (searches, accesses) and spend: tenant scoping, filters, pagination,
ranges, scopes, exact sums with refunds apart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import create_dataset, create_key, error_of, make_config, signup
from tests.http.market_helpers import ADMIN, admin_headers, publish, search
from tests.http.money_helpers import charged_access

TEXT = "Okapi sightings in the Ituri forest, counted by rangers."


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN, **{"pipeline.retry_backoff_seconds": 0.05})


async def _offer(client, service, owner, **fields):
    ds = await create_dataset(client, owner.headers, name="okapi", visibility="listed", monetization_mode="premium",
                              pricing_model="per_retrieval", price_micros=1_000_000, **fields)
    ids = await publish(client, service, await admin_headers(client), owner.headers, ds["dataset_id"], {"okapi.txt": TEXT})
    return ds["dataset_id"], ids["okapi.txt"]


async def test_activity_lists_the_tenants_searches_and_accesses_through_every_key_and_no_one_elses(client, alice, bob, service):
    ds, oid = await _offer(client, service, bob)
    k1 = await create_key(client, alice.headers, ["search:query", "usage:read"])
    k2 = await create_key(client, alice.headers, ["search:query"])
    h1, h2 = {"X-API-Key": k1["key"]}, {"X-API-Key": k2["key"]}
    s1 = (await search(client, h1, "okapi")).json()["data"]["search_id"]
    s2 = (await search(client, h2, "ituri forest", mode="lexical")).json()["data"]["search_id"]
    (await search(client, bob.headers, "rangers")).json()
    a1 = (await client.post(f"/v1/objects/{oid}/access", headers=h1, json={"search_id": s1})).json()["data"]
    a2 = (await client.post(f"/v1/objects/{oid}/access", headers=h2, json={})).json()["data"]
    await service.services.recorder.flush()

    r = await client.get("/v1/agent/activity/searches", headers=h1)
    assert r.status_code == 200, r.text
    body = r.json()["data"]
    assert [s["search_id"] for s in body["searches"]] == [s2, s1] and body["has_more"] is False
    assert body["searches"][0] | {"created_at": None} == {
        "search_id": s2, "query": "ituri forest", "mode": "lexical", "api_key_id": k2["api_key_id"], "dataset_ids": [],
        "result_count": 1, "created_at": None}
    only = (await client.get("/v1/agent/activity/searches", headers=h1, params={"api_key_id": k1["api_key_id"]})).json()["data"]
    assert [s["search_id"] for s in only["searches"]] == [s1]
    accesses = (await client.get("/v1/agent/activity/accesses", headers=alice.headers)).json()["data"]["accesses"]
    assert [a["access_id"] for a in accesses] == [a2["access_id"], a1["access_id"]]
    assert accesses[1] | {"created_at": None} == {
        "access_id": a1["access_id"], "search_id": s1, "dataset_id": ds, "object_id": oid, "api_key_id": k1["api_key_id"],
        "amount_micros": 1_000_000, "currency": "USD", "disputed": False, "created_at": None}
    by_key = (await client.get("/v1/agent/activity/accesses", headers=alice.headers,
                               params={"api_key_id": k2["api_key_id"], "dataset_id": ds})).json()["data"]["accesses"]
    assert [a["access_id"] for a in by_key] == [a2["access_id"]]
    other = (await client.get("/v1/agent/activity/accesses", headers=alice.headers, params={"dataset_id": "dset_nope"})).json()
    assert other["data"]["accesses"] == []
    # bob sees only his own search, none of alice's
    mine = (await client.get("/v1/agent/activity/searches", headers=bob.headers)).json()["data"]["searches"]
    assert [s["query"] for s in mine] == ["rangers"]
    assert (await client.get("/v1/agent/activity/accesses", headers=bob.headers)).json()["data"]["accesses"] == []
    theirs = await client.get("/v1/agent/activity/searches", headers=bob.headers, params={"api_key_id": k1["api_key_id"]})
    assert theirs.json()["data"]["searches"] == []


async def test_activity_pages_with_cursors_and_filters_by_time(client, alice, bob, service):
    store = service.services.store
    made = [await charged_access(store, alice.tenant_id, bob.tenant_id, "dset_x", 10, datetime(2026, 1, d, 12, tzinfo=UTC))
            for d in range(1, 6)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/agent/activity/accesses", headers=alice.headers, params=params)).json()["data"]
        seen += [a["access_id"] for a in page["accesses"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == [a.id for a in reversed(made)]
    ranged = (await client.get("/v1/agent/activity/accesses", headers=alice.headers,
                               params={"from": "2026-01-02T12:00:00Z", "to": "2026-01-04T12:00:00+00:00"})).json()["data"]
    assert [a["access_id"] for a in ranged["accesses"]] == [made[2].id, made[1].id]  # from inclusive, to exclusive


@pytest.mark.parametrize("path", ["/v1/agent/activity/searches", "/v1/agent/activity/accesses", "/v1/agent/spend"])
async def test_bad_ranges_cursors_and_scopes_are_4xx(client, alice, path):
    for params in ({"from": "yesterday"}, {"to": "2026-01-01"}, {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
                   {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, {"cursor": "garbage"}, {"limit": "0"}):
        if path.endswith("spend") and set(params) & {"cursor", "limit"}:
            continue
        r = await client.get(path, headers=alice.headers, params=params)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_request", (params, r.text)
    key = await create_key(client, alice.headers, ["search:query"])
    r = await client.get(path, headers={"X-API-Key": key["key"]})
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    assert (await client.get(path)).status_code == 401


async def test_spend_groups_add_up_exactly_with_refunds_apart(client, alice, bob, service):
    store = service.services.store
    carol = await signup(client)
    key = await create_key(client, alice.headers, ["billing:read"])
    jan = lambda d, h=12: datetime(2026, 1, d, h, tzinfo=UTC)  # noqa: E731
    await charged_access(store, alice.tenant_id, bob.tenant_id, "dset_a", 1_000_001, jan(1), key["api_key_id"])
    await charged_access(store, alice.tenant_id, bob.tenant_id, "dset_a", 333_333, jan(1, 23))
    await charged_access(store, alice.tenant_id, carol.tenant_id, "dset_b", 7, jan(3), key["api_key_id"])
    await charged_access(store, alice.tenant_id, carol.tenant_id, "dset_b", 0, jan(3))  # a free access counts, charges nothing
    await charged_access(store, alice.tenant_id, carol.tenant_id, "dset_e", 5_000, jan(3), currency="EUR")
    await charged_access(store, bob.tenant_id, carol.tenant_id, "dset_b", 99, jan(3))  # another buyer

    by_day = (await client.get("/v1/agent/spend", headers={"X-API-Key": key["key"]}, params={"group_by": "day"})).json()["data"]
    assert by_day == {"currency": "USD", "group_by": "day", "total_micros": 1_333_341, "refunds_micros": 0, "net_micros": 1_333_341,
                      "groups": [{"key": "2026-01-01", "amount_micros": 1_333_334, "accesses": 2},
                                 {"key": "2026-01-03", "amount_micros": 7, "accesses": 2}]}
    by_ds = (await client.get("/v1/agent/spend", headers=alice.headers, params={"group_by": "dataset"})).json()["data"]
    assert [(g["key"], g["amount_micros"], g["accesses"]) for g in by_ds["groups"]] == [("dset_a", 1_333_334, 2), ("dset_b", 7, 2)]
    by_key = (await client.get("/v1/agent/spend", headers=alice.headers, params={"group_by": "api_key"})).json()["data"]
    assert [(g["key"], g["amount_micros"]) for g in by_key["groups"]] == [(key["api_key_id"], 1_000_008), (None, 333_333)]
    for view in (by_ds, by_key):
        assert sum(g["amount_micros"] for g in view["groups"]) == view["total_micros"] == 1_333_341
    eur = (await client.get("/v1/agent/spend", headers=alice.headers, params={"group_by": "dataset", "currency": "eur"})).json()
    assert eur["data"]["total_micros"] == 5_000 and eur["data"]["currency"] == "EUR"
    ranged = (await client.get("/v1/agent/spend", headers=alice.headers,
                               params={"from": "2026-01-02T00:00:00Z", "to": "2027-01-01T00:00:00Z"})).json()["data"]
    assert ranged["total_micros"] == 7
    for params in ({"group_by": "month"}, {"currency": "dollars"}):
        r = await client.get("/v1/agent/spend", headers=alice.headers, params=params)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_request", params
