"""``ipto spend``, ``ipto activity searches|accesses``, ``ipto analytics``, ``ipto payouts``,
``ipto dispute``: the money side for buyers and providers. Tables on a terminal, the API's
answer with ``--json``. Amounts print as exact decimals of the currency (integer micros
formatted, never through a float)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from engine.cli.context import common_options, json_option, list_options, run, take
from engine.cli.output import emit, print_record, print_rows, stdout_console

if TYPE_CHECKING:
    from engine.client import AsyncClient

GROUPS = ("day", "dataset", "api_key")


def money(micros: int | None, currency: str = "") -> str:
    """``1234567`` → ``1.234567`` (exact), with the currency when given."""
    if micros is None:
        return "-"
    sign, value = ("-" if micros < 0 else ""), abs(micros)
    return f"{sign}{value // 1_000_000}.{value % 1_000_000:06d}" + (f" {currency}" if currency else "")


def range_options(fn: Any) -> Any:
    fn = click.option("--to", "until", default=None, help="End (exclusive), ISO 8601, e.g. 2026-12-01T00:00:00Z.")(fn)
    fn = click.option("--from", "since", default=None, help="Start (inclusive), ISO 8601, e.g. 2026-11-01T00:00:00Z.")(fn)
    return fn


@click.command()
@click.option("--group-by", type=click.Choice(GROUPS), default="day", show_default=True)
@click.option("--currency", default=None, help="ISO 4217 code (default USD).")
@range_options
@common_options
@json_option
@click.pass_context
def spend(ctx: click.Context, group_by: str, currency: str | None, since: str | None, until: str | None, as_json: bool) -> None:
    """What your tenant spent, grouped by day, dataset or API key; refunds apart."""

    async def go(api: AsyncClient) -> Any:
        return await api.spend(group_by=group_by, currency=currency, since=since, until=until)

    data = run(ctx, go)

    def human() -> None:
        cur = data["currency"]
        print_rows([{group_by: g["key"] or "(session)", "accesses": g["accesses"], "amount": money(g["amount_micros"], cur)}
                    for g in data["groups"]], [group_by, "accesses", "amount"], empty="no spend")
        stdout_console().print(f"total {money(data['total_micros'], cur)} · refunds {money(data['refunds_micros'], cur)}"
                               f" · net {money(data['net_micros'], cur)}")

    emit(as_json, data, human)


@click.group()
def activity() -> None:
    """Your tenant's recorded searches and accesses (every key and session)."""


@activity.command("searches")
@click.option("--api-key", "api_key_id", default=None, help="Only this API key's.")
@range_options
@list_options
@common_options
@json_option
@click.pass_context
def activity_searches(ctx: click.Context, api_key_id: str | None, since: str | None, until: str | None, limit: int, all_: bool,
                      as_json: bool) -> None:
    """Recorded searches, newest first."""

    async def go(api: AsyncClient) -> list[Any]:
        items = api.iter_search_activity(api_key_id=api_key_id, since=since, until=until, page_size=min(limit, 100))
        return await take(items, None if all_ else limit)

    rows = run(ctx, go)
    emit(as_json, rows, lambda: print_rows(rows, ["search_id", "created_at", "query", "mode", "result_count", "api_key_id"],
                                           empty="no searches"))


@activity.command("accesses")
@click.option("--api-key", "api_key_id", default=None, help="Only this API key's.")
@click.option("--dataset", "dataset_id", default=None, help="Only this dataset's.")
@range_options
@list_options
@common_options
@json_option
@click.pass_context
def activity_accesses(ctx: click.Context, api_key_id: str | None, dataset_id: str | None, since: str | None, until: str | None,
                      limit: int, all_: bool, as_json: bool) -> None:
    """Accesses and what each was charged, newest first."""

    async def go(api: AsyncClient) -> list[Any]:
        items = api.iter_access_activity(api_key_id=api_key_id, dataset_id=dataset_id, since=since, until=until,
                                         page_size=min(limit, 100))
        return await take(items, None if all_ else limit)

    rows = run(ctx, go)
    table = [{**r, "charged": money(r["amount_micros"], r["currency"])} for r in rows]
    emit(as_json, rows, lambda: print_rows(table, ["access_id", "created_at", "dataset_id", "object_id", "charged", "disputed"],
                                           empty="no accesses"))


@click.command()
@click.option("--dataset", "dataset_id", default=None, help="Only this dataset.")
@click.option("--currency", default=None, help="Revenue in this ISO 4217 currency (default USD).")
@range_options
@common_options
@json_option
@click.pass_context
def analytics(ctx: click.Context, dataset_id: str | None, currency: str | None, since: str | None, until: str | None,
              as_json: bool) -> None:
    """How your datasets perform: usage, top keywords, ranking, revenue."""

    async def go(api: AsyncClient) -> Any:
        return await api.analytics(since=since, until=until, dataset_id=dataset_id, currency=currency)

    data = run(ctx, go)

    def human() -> None:
        cur, rev, rank = data["currency"], data["revenue"], data["ranking"]
        print_record({**data["usage"], "avg_rank": rank["avg_rank"], "top3_share": rank["top3_share"],
                      "gross": money(rev["gross_micros"], cur), "fees": money(rev["fee_micros"], cur),
                      "refunds": money(rev["refunds_micros"], cur), "earnings": money(rev["earnings_micros"], cur)}, title="analytics")
        print_rows(data["top_keywords"], ["keyword", "searches"], title="top keywords", empty="no keywords")
        print_rows([{**d, "earnings": money(d["earnings_micros"], cur)} for d in rev["by_dataset"]], ["dataset_id", "earnings"],
                   title="revenue by dataset", empty="no revenue")

    emit(as_json, data, human)


@click.command()
@range_options
@list_options
@common_options
@json_option
@click.pass_context
def payouts(ctx: click.Context, since: str | None, until: str | None, limit: int, all_: bool, as_json: bool) -> None:
    """Your monthly payout statements, newest first (open → pending → released)."""

    async def go(api: AsyncClient) -> list[Any]:
        if since or until:
            page = await api.list_payouts(since=since, until=until, limit=min(limit, 100))
            return list(page.items)
        return await take(api.iter_payouts(page_size=min(limit, 100)), None if all_ else limit)

    rows = run(ctx, go)
    table = [{"period": p["period"], "status": p["status"], "earnings": money(p["earnings_micros"], p["currency"]),
              "held": money(p["held_micros"], p["currency"]), "release_at": p["release_at"], "payout_id": p["payout_id"]} for p in rows]
    emit(as_json, rows, lambda: print_rows(table, ["period", "status", "earnings", "held", "release_at", "payout_id"],
                                           empty="no payouts"))


@click.command()
@click.argument("access_id")
@click.option("--reason", required=True, help="Why the access is disputed.")
@common_options
@json_option
@click.pass_context
def dispute(ctx: click.Context, access_id: str, reason: str, as_json: bool) -> None:
    """Dispute a charged access (within its month's hold window)."""

    async def go(api: AsyncClient) -> Any:
        return await api.dispute(access_id, reason)

    data = run(ctx, go)
    emit(as_json, data, lambda: print_record(data, ["dispute_id", "access_id", "status", "amount_micros", "currency"]))
