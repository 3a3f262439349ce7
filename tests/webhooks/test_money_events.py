"""access.created, dispute.opened and dispute.resolved are written with the money records
they report: the provider hears of each, the buyer of the resolution, nobody else."""

from __future__ import annotations

import orjson
import pytest

from engine.ids import utcnow
from tests.conftest import make_config
from tests.http.market_helpers import ADMIN, admin_headers
from tests.http.money_helpers import charged_access
from tests.rawdb import query


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN, **{"webhooks.allow_private_targets": True})


async def _hook(client, account):
    r = await client.post("/v1/webhooks", headers=account.headers, json={"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    assert r.status_code == 201, r.text


def _events(cfg, tenant_id):
    return [(t, orjson.loads(bytes(b))) for t, b in query(cfg, "SELECT type, body FROM webhook_events WHERE tenant_id = ? ORDER BY created_at",
                                                          tenant_id)]


async def test_money_events_reach_the_provider_and_the_buyer(client, alice, bob, service, cfg):
    await _hook(client, alice)  # the buyer
    await _hook(client, bob)  # the provider
    a = await charged_access(service.services.store, alice.tenant_id, bob.tenant_id, "dset_a", 1_000_003, utcnow())
    r = await client.post(f"/v1/agent/accesses/{a.id}/dispute", headers=alice.headers, json={"reason": "empty file"})
    assert r.status_code == 201, r.text
    dispute_id = r.json()["data"]["dispute_id"]
    admin = await admin_headers(client)
    done = await client.post(f"/v1/admin/disputes/{dispute_id}/resolve", headers=admin, json={"outcome": "refund"})
    assert done.status_code == 200, done.text

    provider = _events(cfg, bob.tenant_id)
    assert [t for t, _ in provider] == ["access.created", "dispute.opened", "dispute.resolved"]
    assert provider[0][1]["data"]["access_id"] == a.id and "buyer_tenant_id" not in provider[0][1]["data"]
    assert provider[1][1]["data"]["dispute_id"] == dispute_id and provider[1][1]["data"]["status"] == "open"
    assert provider[2][1]["data"]["status"] == "refunded"
    buyer = _events(cfg, alice.tenant_id)
    assert [t for t, _ in buyer] == ["dispute.resolved"]
