"""Buyer activity and spend (API.md "Buyer activity and spend").

A tenant sees what it did, through every one of its keys and sessions, never another
tenant's: every read is scoped by the caller's tenant. Spend is read from the ledger in
integer micros; the groups add up to ``total_micros`` exactly (charges), refunds are shown
apart, and ``net_micros`` = total − refunds is what the buyer spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.auth import Principal
from engine.errors import InvalidRequest
from engine.pagination import Page, page_of
from engine.store.base import Store
from engine.store.money import SPEND_GROUPS, AccessView
from engine.store.records import SearchRecord


def check_range(since: datetime | None, until: datetime | None) -> None:
    """``from`` inclusive, ``to`` exclusive: an empty or inverted range is a 400."""
    if since is not None and until is not None and since >= until:
        raise InvalidRequest("from must be before to", {"fields": {"from": "must be before to", "to": "must be after from"}})


def check_currency(currency: str) -> str:
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise InvalidRequest("currency must be an ISO 4217 code", {"fields": {"currency": "expected e.g. USD"}})
    return currency.upper()


@dataclass(frozen=True)
class _Seq:
    """An access view with the ``seq`` pagination pages by."""

    view: AccessView

    @property
    def seq(self) -> int:
        return self.view.access.seq


class Activity:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def searches(self, principal: Principal, api_key_id: str | None, since: datetime | None, until: datetime | None,
                       cursor: str | None, limit: int) -> Page[SearchRecord]:
        check_range(since, until)
        return await page_of(
            lambda after, n: self.store.list_searches(principal.tenant_id, api_key_id, since, until, after, n), cursor, limit)

    async def accesses(self, principal: Principal, api_key_id: str | None, dataset_id: str | None, since: datetime | None,
                       until: datetime | None, cursor: str | None, limit: int) -> Page[_Seq]:
        check_range(since, until)

        async def fetch(after: int | None, n: int) -> list[_Seq]:
            rows = await self.store.list_accesses(principal.tenant_id, api_key_id, dataset_id, since, until, after, n)
            return [_Seq(r) for r in rows]

        return await page_of(fetch, cursor, limit)

    async def spend(self, principal: Principal, group_by: str, currency: str, since: datetime | None,
                    until: datetime | None) -> dict[str, Any]:
        check_range(since, until)
        if group_by not in SPEND_GROUPS:
            raise InvalidRequest(f"group_by must be one of {', '.join(SPEND_GROUPS)}", {"fields": {"group_by": "unknown grouping"}})
        rows = await self.store.spend_rows(principal.tenant_id, check_currency(currency), group_by, since, until)
        groups = [{"key": key, "amount_micros": amount, "accesses": n}
                  for key, (amount, n) in sorted(rows.groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))]
        total = sum(g["amount_micros"] for g in groups)
        return {
            "currency": check_currency(currency), "group_by": group_by, "total_micros": total, "refunds_micros": rows.refunds_micros,
            "net_micros": total - rows.refunds_micros, "groups": groups,
        }
