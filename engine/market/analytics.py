"""Provider analytics (API.md "Provider analytics and payouts").

Only the provider's own datasets count, and only other tenants' activity (a provider's own
searches and retrievals are not demand). A provider sees counts and words, never a buyer's
identity nor a whole query: ``unique_buyers`` is a number, ``top_keywords`` are the folded
words of the queries that showed its datasets (stop words out), counted per search.

Revenue comes from the ledger in integer micros, by the entry's time (a refund counts on
the day it was made): ``gross`` = charges − refunds, ``fee`` = fees − fee refunds,
``earnings`` = gross − fee, ``refunds`` shown apart (already taken off gross). ``avg_rank``
and ``top3_share`` are ratios (not money), rounded to 4 places.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.auth import Principal
from engine.ids import iso
from engine.market.activity import check_currency, check_range
from engine.market.stopwords import STOP_WORDS
from engine.store.base import Store
from engine.store.money import statement_amounts

TOP_KEYWORDS = 20


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _revenue(kinds: dict[str, int]) -> dict[str, int]:
    gross, fee, refunds, _held, earnings = statement_amounts(kinds, 0)
    return {"gross_micros": gross, "fee_micros": fee, "refunds_micros": refunds, "earnings_micros": earnings}


class Analytics:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def provider(self, principal: Principal, since: datetime | None, until: datetime | None, dataset_id: str | None,
                       currency: str) -> dict[str, Any]:
        check_range(since, until)
        currency = check_currency(currency)
        raw = await self.store.provider_usage(principal.tenant_id, dataset_id, currency, since, until, sorted(STOP_WORDS), TOP_KEYWORDS)
        impressions = sum(d[1] for d in raw.by_dataset)
        rank_sum = sum(d[2] for d in raw.by_dataset)
        top3 = sum(d[3] for d in raw.by_dataset)
        total: dict[str, int] = {}
        per_ds: dict[str, dict[str, int]] = {}
        per_day: dict[str, dict[str, int]] = {}
        for ds, day, kind, amount in raw.revenue:
            for bucket in (total, per_ds.setdefault(ds, {}), per_day.setdefault(day, {})):
                bucket[kind] = bucket.get(kind, 0) + amount
        return {
            "from": iso(since), "to": iso(until), "currency": currency, "dataset_id": dataset_id,
            "usage": {"searches": raw.searches, "impressions": impressions, "accesses": raw.accesses,
                      "unique_buyers": raw.unique_buyers},
            "top_keywords": [{"keyword": k, "searches": n} for k, n in raw.keywords],
            "ranking": {
                "avg_rank": _ratio(rank_sum, impressions), "top3_share": _ratio(top3, impressions),
                "by_dataset": [{"dataset_id": ds, "impressions": n, "avg_rank": _ratio(s, n), "top3_share": _ratio(t, n)}
                               for ds, n, s, t in raw.by_dataset],
            },
            "revenue": {
                **_revenue(total),
                "by_dataset": [{"dataset_id": ds, **_revenue(k)} for ds, k in sorted(per_ds.items())],
                "by_day": [{"day": day, **_revenue(k)} for day, k in sorted(per_day.items())],
            },
        }
