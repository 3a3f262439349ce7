"""Provider analytics and payouts over HTTP: only the provider's datasets and other
tenants' activity, counts and words (never buyers or whole queries), revenue net of
refunds in integer micros, statements with previews, ranges and scopes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.auth import ADMIN_SCOPE, TENANT_SCOPES, Principal
from engine.ids import utcnow
from engine.market.disputes import Disputes
from tests.conftest import create_key, error_of, make_config, signup
from tests.http.market_helpers import ADMIN
from tests.http.money_helpers import charged_access, recorded_search


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN)


T = datetime(2026, 3, 10, 9, tzinfo=UTC)


async def test_analytics_counts_only_others_activity_on_the_providers_datasets(client, alice, bob, service):
    store = service.services.store
    carol, dave = await signup(client), await signup(client)
    b1, b2, c1 = ("dset_b1", bob.tenant_id), ("dset_b2", bob.tenant_id), ("dset_c1", carol.tenant_id)
    await recorded_search(store, alice.tenant_id, "Okapi census in the forest", [b1, b2, c1], T)
    await recorded_search(store, dave.tenant_id, "okapi population", [c1, c1, c1, b1], T.replace(day=11))
    await recorded_search(store, bob.tenant_id, "okapi secretplan", [b1], T)  # the provider's own: not demand
    await recorded_search(store, alice.tenant_id, "zebra stripes", [c1], T)  # never showed bob's datasets
    paid = await charged_access(store, alice.tenant_id, bob.tenant_id, "dset_b1", 1_000_000, T)
    await charged_access(store, dave.tenant_id, bob.tenant_id, "dset_b2", 500, T.replace(day=12))
    await charged_access(store, bob.tenant_id, bob.tenant_id, "dset_b1", 0, T)
    # refunded on March 13th: the disputes service with its clock set then
    disputes = Disputes(store, service.services.cfg.billing.hold_seconds, lambda: T.replace(day=13))
    buyer = Principal("session", alice.user_id, alice.tenant_id, frozenset(TENANT_SCOPES), ("owner",))
    dispute = await disputes.open(buyer, paid.id, "empty file")
    await disputes.resolve(Principal("session", "usr_admin", "tnt_platform", frozenset({ADMIN_SCOPE}), (), True), dispute.id, "refund")

    r = await client.get("/v1/provider/analytics", headers=bob.headers,
                         params={"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    a = r.json()["data"]
    assert a["from"] == "2026-03-01T00:00:00.000Z" and a["to"] == "2026-04-01T00:00:00.000Z"
    assert a["usage"] == {"searches": 2, "impressions": 3, "accesses": 2, "unique_buyers": 2}
    assert a["top_keywords"] == [{"keyword": "okapi", "searches": 2}, {"keyword": "census", "searches": 1},
                                 {"keyword": "forest", "searches": 1}, {"keyword": "population", "searches": 1}]
    assert a["ranking"] == {"avg_rank": 2.3333, "top3_share": 0.6667, "by_dataset": [
        {"dataset_id": "dset_b1", "impressions": 2, "avg_rank": 2.5, "top3_share": 0.5},
        {"dataset_id": "dset_b2", "impressions": 1, "avg_rank": 2.0, "top3_share": 1.0}]}
    rev = a["revenue"]
    assert {k: rev[k] for k in ("gross_micros", "fee_micros", "refunds_micros", "earnings_micros")} == {
        "gross_micros": 500, "fee_micros": 100, "refunds_micros": 1_000_000, "earnings_micros": 400}
    assert rev["by_dataset"] == [
        {"dataset_id": "dset_b1", "gross_micros": 0, "fee_micros": 0, "refunds_micros": 1_000_000, "earnings_micros": 0},
        {"dataset_id": "dset_b2", "gross_micros": 500, "fee_micros": 100, "refunds_micros": 0, "earnings_micros": 400}]
    assert sum(day["earnings_micros"] for day in rev["by_day"]) == rev["earnings_micros"]
    for secret in (alice.tenant_id, dave.tenant_id, "Okapi census", "okapi population", "secretplan", "zebra", alice.email):
        assert secret not in r.text

    only = (await client.get("/v1/provider/analytics", headers=bob.headers, params={"dataset_id": "dset_b2"})).json()["data"]
    assert only["usage"] == {"searches": 1, "impressions": 1, "accesses": 1, "unique_buyers": 1}
    assert only["revenue"]["gross_micros"] == 500
    theirs = (await client.get("/v1/provider/analytics", headers=carol.headers)).json()["data"]
    assert theirs["usage"]["impressions"] == 5 and theirs["revenue"]["gross_micros"] == 0
    assert {k["keyword"] for k in theirs["top_keywords"]} == {"okapi", "census", "forest", "population", "zebra", "stripes"}
    none = (await client.get("/v1/provider/analytics", headers=bob.headers, params={"from": "2026-03-11T00:00:00Z"})).json()["data"]
    assert none["usage"]["impressions"] == 1 and none["usage"]["searches"] == 1


@pytest.mark.parametrize("path", ["/v1/provider/analytics", "/v1/provider/payouts"])
async def test_provider_views_refuse_bad_ranges_and_missing_scopes(client, alice, path):
    for params in ({"from": "March"}, {"to": "2026-03-01T00:00:00"}, {"from": "2026-04-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}):
        r = await client.get(path, headers=alice.headers, params=params)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_request", params
    key = await create_key(client, alice.headers, ["search:query"])
    assert (await client.get(path, headers={"X-API-Key": key["key"]})).status_code == 403


async def test_payouts_show_statements_newest_first_with_previews_and_releases(client, alice, bob, service):
    svc = service.services
    now = utcnow()
    # statements are opened in month order (a month's first charge opens it): history first
    await charged_access(svc.store, alice.tenant_id, bob.tenant_id, "dset_b", 1_000, datetime(2025, 1, 5, tzinfo=UTC))
    await charged_access(svc.store, alice.tenant_id, bob.tenant_id, "dset_b", 2_000_000, now)
    assert await svc.settlement.settle_due() == 1  # January 2025 is long past its hold
    r = await client.get("/v1/provider/payouts", headers=bob.headers)
    assert r.status_code == 200, r.text
    current, jan = r.json()["data"]["payouts"]
    assert jan | {"payout_id": None, "released_at": None} == {
        "payout_id": None, "period": "2025-01", "period_start": "2025-01-01T00:00:00.000Z", "period_end": "2025-02-01T00:00:00.000Z",
        "currency": "USD", "gross_micros": 1_000, "fee_micros": 200, "refunds_micros": 0, "held_micros": 0, "earnings_micros": 800,
        "status": "released", "release_at": "2025-02-15T00:00:00.000Z", "released_at": None}
    assert jan["released_at"] is not None
    assert current["status"] == "open" and current["released_at"] is None
    assert (current["gross_micros"], current["earnings_micros"]) == (2_000_000, 1_600_000)
    assert (await client.get("/v1/provider/payouts", headers=alice.headers)).json()["data"]["payouts"] == []
    ranged = (await client.get("/v1/provider/payouts", headers=bob.headers,
                               params={"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z", "limit": 1})).json()["data"]
    assert [p["period"] for p in ranged["payouts"]] == ["2025-01"] and ranged["has_more"] is False
