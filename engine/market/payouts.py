"""Provider payouts (API.md "Provider analytics and payouts"): one statement per provider,
UTC month and currency.

A statement's row is written with the month's first charge; that row is the durable
settlement deadline: ``release_at`` = the month's end + ``billing.hold_seconds``. Its
``status`` follows the clock: ``open`` while the month runs, ``pending`` once it ended
(disputes may still be opened), ``released`` once the settlement clock paid it
(``released_at`` set, amounts frozen). Before release the amounts are a preview of what
would be paid now.

What a release pays: every ledger entry of the provider and currency, of its month or an
earlier one, not paid by an earlier statement and not under an open dispute. Entries under
an open dispute are ``held_micros`` (their charges) and stay unpaid; once the dispute is
resolved they are paid by the next statement released. Amounts: ``gross`` = charges −
refunds, ``fee`` = fees − fee refunds, ``earnings`` = gross − fee (what is paid),
``refunds`` shown apart (already taken off gross), ``held`` not included.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from engine.auth import Principal
from engine.ids import iso
from engine.market.activity import check_range
from engine.pagination import Page, page_of
from engine.store.base import Store
from engine.store.money import Payout, UnreleasedSum, statement_amounts


def status_of(p: Payout, now: datetime) -> str:
    """``pending`` from the month's end, even before the settlement clock marked it
    (``pending_at``, written with the ``payout.pending`` event)."""
    if p.released_at is not None:
        return "released"
    return "pending" if p.pending_at is not None or now >= p.period_end else "open"


def preview(statements: list[Payout], sums: list[UnreleasedSum]) -> dict[str, tuple[int, int, int, int, int]]:
    """What each unreleased statement would pay now, by payout id: every unpaid entry goes
    to the earliest unreleased statement of its currency whose month is its own or later."""
    buckets: dict[str, dict[str, int]] = {p.id: {} for p in statements}
    held: dict[str, int] = {p.id: 0 for p in statements}
    for s in sums:
        target = next((p for p in statements if p.currency == s.currency and p.period >= s.period), None)
        if target is None:
            continue
        if s.held:
            held[target.id] += s.amount_micros if s.kind == "charge" else 0
        else:
            buckets[target.id][s.kind] = buckets[target.id].get(s.kind, 0) + s.amount_micros
    return {pid: statement_amounts(kinds, held[pid]) for pid, kinds in buckets.items()}


class Payouts:
    def __init__(self, store: Store, hold_seconds: int, now: Callable[[], datetime]) -> None:
        self.store = store
        self.hold = timedelta(seconds=hold_seconds)
        self.now = now

    def release_at(self, p: Payout) -> datetime:
        return p.period_end + self.hold

    async def list(self, principal: Principal, since: datetime | None, until: datetime | None, cursor: str | None,
                   limit: int) -> tuple[Page[Payout], dict[str, tuple[int, int, int, int, int]]]:
        """A page of the provider's statements newest first, and previews of the unreleased ones."""
        check_range(since, until)
        page = await page_of(lambda after, n: self.store.list_payouts(principal.tenant_id, since, until, after, n), cursor, limit)
        previews: dict[str, tuple[int, int, int, int, int]] = {}
        if any(p.released_at is None for p in page.items):
            previews = preview(await self.store.unreleased_payouts(principal.tenant_id),
                               await self.store.unreleased_sums(principal.tenant_id))
        return page, previews

    def view(self, p: Payout, previews: dict[str, tuple[int, int, int, int, int]]) -> dict[str, Any]:
        if p.released_at is not None:
            amounts = (p.gross_micros, p.fee_micros, p.refunds_micros, p.held_micros, p.earnings_micros)
        else:
            amounts = previews.get(p.id, (0, 0, 0, 0, 0))
        gross, fee, refunds, held, earnings = amounts
        return {
            "payout_id": p.id, "period": p.period, "period_start": iso(p.period_start), "period_end": iso(p.period_end),
            "currency": p.currency, "gross_micros": gross, "fee_micros": fee, "refunds_micros": refunds, "held_micros": held,
            "earnings_micros": earnings, "status": status_of(p, self.now()), "release_at": iso(self.release_at(p)),
            "released_at": iso(p.released_at),
        }
