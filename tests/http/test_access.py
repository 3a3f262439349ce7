"""POST /v1/objects/{id}/access: discovery rules, the four pricing models, the platform fee,
ledger entries in the access's transaction, idempotency under concurrent retries."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.conftest import create_dataset, create_key, error_of, make_config
from tests.http.market_helpers import ADMIN, admin_headers, publish, search
from tests.rawdb import query

TEXT = "Quarterly okapi census: 412 okapis counted in the Ituri forest."


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN, **{"pipeline.retry_backoff_seconds": 0.05, "billing.platform_fee_bps": 2000})


async def _offer(client, service, owner, **fields):
    ds = await create_dataset(client, owner.headers, name="census", **{"visibility": "listed", **fields})
    ids = await publish(client, service, await admin_headers(client), owner.headers, ds["dataset_id"], {"census.txt": TEXT})
    return ds, ids["census.txt"]


async def _access(client, headers, object_id, key=None, **body):
    extra = {"Idempotency-Key": key} if key else {}
    return await client.post(f"/v1/objects/{object_id}/access", headers={**headers, **extra}, json=body or None)


async def test_per_retrieval_charges_each_access_with_its_fee_in_the_ledger(client, alice, bob, service):
    ds, oid = await _offer(client, service, bob, monetization_mode="premium", pricing_model="per_retrieval", price_micros=1_500_000)
    found = (await search(client, alice.headers, "okapi")).json()["data"]
    hit = found["results"][0]
    r = await _access(client, alice.headers, oid, search_id=found["search_id"], result_id=hit["result_id"])
    assert r.status_code == 201, r.text
    a = r.json()["data"]
    assert a["access_id"].startswith("acc_") and a["object_id"] == oid and a["dataset_id"] == ds["dataset_id"]
    assert a["charge"] == {"amount_micros": 1_500_000, "currency": "USD"}
    assert a["search_id"] == found["search_id"] and a["result_id"] == hit["result_id"]
    assert (await client.get(a["download_url"])).content == TEXT.encode()
    entries = await service.services.store.ledger_for_access(a["access_id"])
    assert [(e.kind, e.amount_micros) for e in entries] == [("charge", 1_500_000), ("fee", 300_000)]
    assert all(isinstance(e.amount_micros, int) and e.buyer_tenant_id == alice.tenant_id and e.provider_tenant_id == bob.tenant_id
               for e in entries)
    second = (await _access(client, alice.headers, oid)).json()["data"]
    assert second["access_id"] != a["access_id"] and second["charge"]["amount_micros"] == 1_500_000
    view = (await client.get(f"/v1/datasets/{ds['dataset_id']}", headers=bob.headers)).json()["data"]
    assert view["price_micros"] == 1_500_000 and view["currency"] == "USD" and view["current_price_micros"] == 1_500_000


async def test_flat_rate_is_charged_once_a_month_per_buyer(client, alice, bob, service):
    ds, oid = await _offer(client, service, bob, monetization_mode="premium", pricing_model="flat_rate", price_micros=9_000_000,
                           currency="EUR")
    catalog = (await client.get("/v1/catalog/datasets", headers=alice.headers)).json()["data"]["datasets"]
    assert [d["current_price_micros"] for d in catalog if d["dataset_id"] == ds["dataset_id"]] == [9_000_000]
    charges = [(await _access(client, alice.headers, oid)).json()["data"]["charge"] for _ in range(3)]
    assert charges == [{"amount_micros": 9_000_000, "currency": "EUR"}] + [{"amount_micros": 0, "currency": "EUR"}] * 2
    catalog = (await client.get("/v1/catalog/datasets", headers=alice.headers)).json()["data"]["datasets"]
    assert [d["current_price_micros"] for d in catalog if d["dataset_id"] == ds["dataset_id"]] == [0]


async def test_demand_curve_open_mode_and_the_owner(client, alice, bob, service):
    ds, oid = await _offer(client, service, bob, monetization_mode="premium", pricing_model="demand_curve", price_micros=1_000_000)
    assert (await _access(client, alice.headers, oid)).json()["data"]["charge"]["amount_micros"] == 1_000_000  # a = 0
    assert (await _access(client, alice.headers, oid)).json()["data"]["charge"]["amount_micros"] == 1_004_321  # a = 1: ×log10(101)−1
    assert (await _access(client, bob.headers, oid)).json()["data"]["charge"]["amount_micros"] == 0  # the owner is never charged
    assert (await _access(client, alice.headers, oid)).json()["data"]["charge"]["amount_micros"] == 1_008_600  # a = 2 (owner's not counted)
    await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=bob.headers, json={"monetization_mode": "open"})
    r = await _access(client, alice.headers, oid)
    assert r.json()["data"]["charge"]["amount_micros"] == 0
    assert await service.services.store.ledger_for_access(r.json()["data"]["access_id"]) == []


async def test_restricted_monetization_needs_a_grant(client, alice, bob, service):
    ds, oid = await _offer(client, service, bob, monetization_mode="restricted", pricing_model="per_retrieval", price_micros=10)
    r = await _access(client, alice.headers, oid)
    assert r.status_code == 403 and error_of(r)["code"] == "grant_required"
    await client.post(f"/v1/datasets/{ds['dataset_id']}/grants", headers=bob.headers, json={"tenant_id": alice.tenant_id})
    r = await _access(client, alice.headers, oid)
    assert r.status_code == 201 and r.json()["data"]["charge"]["amount_micros"] == 10


async def test_objects_one_could_not_find_are_404(client, alice, bob, service):
    private, hidden = await _offer(client, service, bob, visibility="private")
    assert (await _access(client, alice.headers, hidden)).status_code == 404
    assert (await _access(client, alice.headers, "obj_doesnotexist000000000")).status_code == 404
    assert (await _access(client, bob.headers, hidden)).status_code == 201  # the owner may
    await client.delete(f"/v1/objects/{hidden}", headers=bob.headers)
    assert (await _access(client, bob.headers, hidden)).status_code == 404  # deleted: never retrievable
    _, oid = await _offer(client, service, bob)
    assert (await _access(client, alice.headers, oid, search_id="srch_aaaaaaaaaaaaaaaaaaaa")).status_code == 404
    assert (await _access(client, alice.headers, oid, search_id="nope")).status_code == 400
    key = (await create_key(client, alice.headers, ["datasets:read"]))["key"]
    r = await _access(client, {"X-API-Key": key}, oid)
    assert r.status_code == 403 and error_of(r)["details"]["required_scope"] == "search:query"


async def test_a_retried_access_is_one_access_and_one_charge_under_50_concurrent_retries(client, alice, bob, service):
    _, oid = await _offer(client, service, bob, monetization_mode="premium", pricing_model="per_retrieval", price_micros=2_000_000)
    answers: list[httpx.Response] = []

    async def attempt():
        answers.append(await _access(client, alice.headers, oid, key="retry-me-1"))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(attempt)
    done = [r for r in answers if r.status_code == 201]
    assert done and all(r.status_code in (201, 409) for r in answers), [r.status_code for r in answers]
    assert {r.json()["data"]["access_id"] for r in done} == {done[0].json()["data"]["access_id"]}
    replay = await _access(client, alice.headers, oid, key="retry-me-1")
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    access_id = replay.json()["data"]["access_id"]
    store = service.services.store
    assert [(e.kind, e.amount_micros) for e in await store.ledger_for_access(access_id)] == [("charge", 2_000_000), ("fee", 400_000)]
    cfg = service.services.cfg
    assert query(cfg, "SELECT count(*) FROM accesses WHERE buyer_tenant_id = ?", alice.tenant_id) == [(1,)]
    assert query(cfg, "SELECT count(*), sum(amount_micros) FROM ledger_entries WHERE buyer_tenant_id = ?", alice.tenant_id) == [
        (2, 2_400_000)]


async def test_bad_bodies_are_400(client, alice, bob, service):
    _, oid = await _offer(client, service, bob)
    for body in ({"search_id": 5}, {"result_id": "x"}, {"bogus": 1}):
        r = await client.post(f"/v1/objects/{oid}/access", headers=alice.headers, json=body)
        assert r.status_code == 400, body
    r = await client.post(f"/v1/objects/{oid}/access", headers=alice.headers, content=b"not json")
    assert r.status_code == 400
    bad = await client.post("/v1/datasets", headers=bob.headers, json={"name": "x", "price_micros": -1, "currency": "usd"})
    assert bad.status_code == 400 and set(error_of(bad)["details"]["fields"]) == {"price_micros", "currency"}
