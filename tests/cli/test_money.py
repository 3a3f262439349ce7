"""``ipto spend``, ``ipto activity``, ``ipto analytics``, ``ipto payouts``, ``ipto dispute``,
and the client's money methods, against a real server."""

from __future__ import annotations

from datetime import UTC, datetime

import trio

from engine.client import AsyncClient, Client
from engine.ids import utcnow
from tests.cli.conftest import PASSWORD, json_out, one_error_line
from tests.conftest import signup
from tests.http.money_helpers import charged_access, recorded_search


async def test_money_commands_print_tables_and_json(ipto, provider, client, service):
    store = service.services.store
    buyer = await signup(client, password=PASSWORD)
    them = ipto.as_user("buyer")
    assert (await them("login", "--email", buyer.email, "--password", PASSWORD)).exit_code == 0
    now = utcnow()
    a = await charged_access(store, buyer.tenant_id, provider.tenant_id, "dset_cli", 1_234_567, now)
    await charged_access(store, buyer.tenant_id, provider.tenant_id, "dset_cli", 1, now)
    await recorded_search(store, buyer.tenant_id, "okapi census", [("dset_cli", provider.tenant_id)], now)

    spent = json_out(await them("spend", "--group-by", "dataset", "--json"))
    assert spent["total_micros"] == 1_234_568 and spent["groups"] == [{"key": "dset_cli", "amount_micros": 1_234_568, "accesses": 2}]
    human = await them("spend", "--group-by", "dataset")
    assert human.exit_code == 0 and "dset_cli" in human.stdout and "1.234568 USD" in human.stdout
    accesses = json_out(await them("activity", "accesses", "--json"))
    assert [x["amount_micros"] for x in accesses] == [1, 1_234_567]
    human = await them("activity", "accesses", "--limit", "1")
    assert human.exit_code == 0 and "0.000001 USD" in human.stdout and a.id not in human.stdout
    searches = json_out(await them("activity", "searches", "--from", "2020-01-01T00:00:00Z", "--json"))
    assert [s["query"] for s in searches] == ["okapi census"]
    d = json_out(await them("dispute", a.id, "--reason", "wrong file", "--json"))
    assert d["status"] == "open" and d["access_id"] == a.id
    failed = await them("dispute", a.id, "--reason", "again")
    assert failed.exit_code == 1 and "already_disputed" in one_error_line(failed)

    stats = json_out(await ipto("analytics", "--json"))
    assert stats["usage"]["searches"] == 1 and [k["keyword"] for k in stats["top_keywords"]] == ["census", "okapi"]
    human = await ipto("analytics")
    assert human.exit_code == 0 and "okapi" in human.stdout and buyer.tenant_id not in human.stdout
    paid = json_out(await ipto("payouts", "--json"))
    assert [(p["status"], p["held_micros"], p["gross_micros"]) for p in paid] == [("open", 1_234_567, 1)]
    human = await ipto("payouts")
    assert human.exit_code == 0 and "open" in human.stdout and "1.234567 USD" in human.stdout

    failed = await them("spend", "--from", "yesterday")
    assert failed.exit_code == 1 and "invalid_request" in one_error_line(failed)
    failed = await them("spend", "--group-by", "month")
    assert failed.exit_code == 2  # click refuses it before any request


async def test_the_clients_money_methods(client, service):
    store = service.services.store
    buyer, seller = await signup(client), await signup(client)
    when = datetime(2026, 2, 3, 4, tzinfo=UTC)
    for i in range(3):
        await charged_access(store, buyer.tenant_id, seller.tenant_id, f"dset_{i}", 100 * (i + 1), when)
    async with AsyncClient(service.url, token=buyer.token) as api:
        assert [a["amount_micros"] async for a in api.iter_access_activity(page_size=1)] == [300, 200, 100]
        page = await api.list_access_activity(dataset_id="dset_1")
        assert [a["amount_micros"] for a in page.items] == [200] and page.has_more is False
        assert (await api.spend(group_by="day"))["groups"] == [{"key": "2026-02-03", "amount_micros": 600, "accesses": 3}]
        assert [s async for s in api.iter_search_activity()] == []

    def sync_calls():
        with Client(service.url, token=seller.token) as api:
            periods = [p["period"] for p in api.list_payouts().items]
            gross = api.analytics(since="2026-02-01T00:00:00Z", until="2026-03-01T00:00:00Z")["revenue"]["gross_micros"]
            return periods, gross

    assert await trio.to_thread.run_sync(sync_calls) == (["2026-02"], 600)
