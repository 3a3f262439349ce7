"""Disputes over HTTP: opening one within the window, once per access; admins list and
resolve; a refund's negative ledger entries; every bad input a 4xx with nothing written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.ids import utcnow
from tests.conftest import create_key, error_of, make_config
from tests.http.market_helpers import ADMIN, admin_headers
from tests.http.money_helpers import charged_access
from tests.rawdb import query


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN)


def _ledger(cfg, access_id):
    return query(cfg, "SELECT kind, amount_micros FROM ledger_entries WHERE access_id = ? ORDER BY seq", access_id)


async def _dispute(client, headers, access_id, **body):
    return await client.post(f"/v1/agent/accesses/{access_id}/dispute", headers=headers, json=body or {"reason": "wrong data"})


async def test_a_buyer_disputes_once_and_an_admin_refunds_it(client, alice, bob, service):
    store, cfg = service.services.store, service.services.cfg
    a = await charged_access(store, alice.tenant_id, bob.tenant_id, "dset_a", 1_000_003, utcnow())
    r = await _dispute(client, alice.headers, a.id, reason="the file was empty")
    assert r.status_code == 201, r.text
    d = r.json()["data"]
    assert d["dispute_id"].startswith("dsp_") and d["access_id"] == a.id and d["status"] == "open"
    again = await _dispute(client, alice.headers, a.id)
    assert again.status_code == 409 and error_of(again)["code"] == "already_disputed"
    listed = (await client.get("/v1/agent/activity/accesses", headers=alice.headers)).json()["data"]["accesses"]
    assert [x["disputed"] for x in listed] == [True]

    admin = await admin_headers(client)
    assert (await client.get("/v1/admin/disputes", headers=alice.headers)).status_code == 403
    page = (await client.get("/v1/admin/disputes", headers=admin, params={"status": "open"})).json()["data"]
    assert [x["dispute_id"] for x in page["disputes"]] == [d["dispute_id"]]
    assert page["disputes"][0]["buyer_tenant_id"] == alice.tenant_id and page["disputes"][0]["amount_micros"] == 1_000_003
    assert (await client.post(f"/v1/admin/disputes/{d['dispute_id']}/resolve", headers=alice.headers,
                              json={"outcome": "refund"})).status_code == 403
    done = await client.post(f"/v1/admin/disputes/{d['dispute_id']}/resolve", headers=admin, json={"outcome": "refund"})
    assert done.status_code == 200, done.text
    assert done.json()["data"]["status"] == "refunded" and done.json()["data"]["resolved_at"]
    got = await client.get(f"/v1/admin/disputes/{d['dispute_id']}", headers=admin)
    assert got.status_code == 200 and got.json()["data"] == done.json()["data"]
    assert _ledger(cfg, a.id) == [("charge", 1_000_003), ("fee", 200_000), ("refund", -1_000_003), ("fee_refund", -200_000)]
    twice = await client.post(f"/v1/admin/disputes/{d['dispute_id']}/resolve", headers=admin, json={"outcome": "reject"})
    assert twice.status_code == 409 and error_of(twice)["code"] == "conflict"
    assert len(_ledger(cfg, a.id)) == 4  # nothing more written
    spend = (await client.get("/v1/agent/spend", headers=alice.headers, params={"group_by": "dataset"})).json()["data"]
    assert (spend["total_micros"], spend["refunds_micros"], spend["net_micros"]) == (1_000_003, 1_000_003, 0)
    refunded = (await client.get("/v1/admin/disputes", headers=admin, params={"status": "refunded"})).json()["data"]["disputes"]
    assert [x["dispute_id"] for x in refunded] == [d["dispute_id"]]
    assert (await client.get("/v1/admin/disputes", headers=admin, params={"status": "open"})).json()["data"]["disputes"] == []


async def test_a_rejected_dispute_writes_nothing_to_the_ledger(client, alice, bob, service):
    a = await charged_access(service.services.store, alice.tenant_id, bob.tenant_id, "dset_a", 500, utcnow())
    d = (await _dispute(client, alice.headers, a.id)).json()["data"]
    admin = await admin_headers(client)
    r = await client.post(f"/v1/admin/disputes/{d['dispute_id']}/resolve", headers=admin, json={"outcome": "reject"})
    assert r.status_code == 200 and r.json()["data"]["status"] == "rejected"
    assert _ledger(service.services.cfg, a.id) == [("charge", 500), ("fee", 100)]


async def test_disputes_that_cannot_be_opened_are_4xx_and_write_nothing(client, alice, bob, service):
    store, cfg = service.services.store, service.services.cfg
    now = utcnow()
    mine = await charged_access(store, alice.tenant_id, bob.tenant_id, "dset_a", 10, now)
    free = await charged_access(store, alice.tenant_id, bob.tenant_id, "dset_a", 0, now)
    old = await charged_access(store, alice.tenant_id, bob.tenant_id, "dset_a", 10, now - timedelta(days=80))
    r = await _dispute(client, bob.headers, mine.id)  # another tenant's access
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = await _dispute(client, alice.headers, "acc_doesnotexist0000000")
    assert r.status_code == 404
    r = await _dispute(client, alice.headers, free.id)
    assert r.status_code == 409 and error_of(r)["code"] == "not_disputable"
    r = await _dispute(client, alice.headers, old.id)
    assert r.status_code == 409 and error_of(r)["code"] == "not_disputable" and "window_closed_at" in error_of(r)["details"]
    for body in ({}, {"reason": 5}, {"reason": "x" * 2001}):
        r = await client.post(f"/v1/agent/accesses/{mine.id}/dispute", headers=alice.headers, json=body)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_request", body
    key = await create_key(client, alice.headers, ["usage:read"])
    r = await _dispute(client, {"X-API-Key": key["key"]}, mine.id)
    assert r.status_code == 403
    assert query(cfg, "SELECT count(*) FROM disputes") == [(0,)]
    admin = await admin_headers(client)
    for outcome in ("refunded", "", None):
        d = (await _dispute(client, alice.headers, mine.id)) if outcome == "refunded" else None
        dispute_id = d.json()["data"]["dispute_id"] if d is not None else "dsp_whatever"
        r = await client.post(f"/v1/admin/disputes/{dispute_id}/resolve", headers=admin, json={"outcome": outcome})
        assert r.status_code == 400, r.text
    assert (await client.post("/v1/admin/disputes/dsp_nope/resolve", headers=admin, json={"outcome": "refund"})).status_code == 404
    assert (await client.get("/v1/admin/disputes", headers=admin, params={"status": "closed"})).status_code == 400
    assert query(cfg, "SELECT status FROM disputes") == [("open",)]
    assert query(cfg, "SELECT count(*) FROM ledger_entries WHERE kind IN ('refund', 'fee_refund')") == [(0,)]


async def test_disputes_follow_idempotency_keys(client, alice, bob, service):
    a = await charged_access(service.services.store, alice.tenant_id, bob.tenant_id, "dset_a", 10, datetime.now(UTC))
    h = {**alice.headers, "Idempotency-Key": "dispute-1"}
    first = await client.post(f"/v1/agent/accesses/{a.id}/dispute", headers=h, json={"reason": "r"})
    replay = await client.post(f"/v1/agent/accesses/{a.id}/dispute", headers=h, json={"reason": "r"})
    assert first.status_code == replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert first.json()["data"] == replay.json()["data"]
