"""What both stores' money parts share: dispute and payout records, the raw aggregates the
views are built from, and the store methods (:class:`MoneyStore`) behind them.

Every amount is an ``int`` of micros. Aggregates come back as sums per key; the domain
(``engine/market/``) turns them into the API's views, so both backends answer alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from engine.store.records import Access, LedgerEntry, SearchRecord

DISPUTE_STATES = ("open", "refunded", "rejected")
SPEND_GROUPS = ("day", "dataset", "api_key")


@dataclass(frozen=True)
class Dispute:
    id: str
    access_id: str
    buyer_tenant_id: str
    provider_tenant_id: str
    dataset_id: str
    amount_micros: int
    currency: str
    period: str
    reason: str
    status: str  # open | refunded | rejected
    opened_by: str
    created_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    seq: int = 0


@dataclass(frozen=True)
class Payout:
    """A provider's statement for one UTC month and currency. The amounts are set when it
    is released; before that they are None (the domain previews them)."""

    id: str
    provider_tenant_id: str
    period: str
    currency: str
    period_start: datetime
    period_end: datetime
    created_at: datetime
    released_at: datetime | None = None
    pending_at: datetime | None = None  # when the settlement clock marked its month ended
    gross_micros: int | None = None
    fee_micros: int | None = None
    refunds_micros: int | None = None
    held_micros: int | None = None
    earnings_micros: int | None = None
    seq: int = 0


@dataclass(frozen=True)
class AccessView:
    access: Access
    disputed: bool


@dataclass(frozen=True)
class SpendRows:
    """A buyer's spend in one currency over a range: per group key ``(charges, accesses)``,
    and the refunds (positive micros) apart."""

    groups: dict[str | None, tuple[int, int]]
    refunds_micros: int


@dataclass(frozen=True)
class UnreleasedSum:
    """Σ of a provider's not-yet-paid ledger entries of one kind, period and currency;
    ``held``: they belong to accesses under an open dispute."""

    period: str
    currency: str
    kind: str
    held: bool
    amount_micros: int


@dataclass(frozen=True)
class ProviderUsage:
    """Raw analytics of one provider over a range (other tenants' activity only)."""

    searches: int
    accesses: int
    unique_buyers: int
    by_dataset: list[tuple[str, int, int, int]]  # (dataset_id, impressions, Σ rank, impressions at rank ≤ 3)
    keywords: list[tuple[str, int]]  # (keyword, searches), most searched first
    revenue: list[tuple[str, str, str, int]]  # (dataset_id, day YYYY-MM-DD, ledger kind, Σ micros)


# Given the access being disputed/refunded and the dispute, the refund entries to write.
RefundEntries = Callable[[Access, Dispute], list[LedgerEntry]]


class MoneyStore(Protocol):
    """The store's money methods (SQLite: ``sqlite/money.py``; PostgreSQL: ``postgres/money.py``)."""

    async def list_searches(self, tenant_id: str, api_key_id: str | None, since: datetime | None, until: datetime | None,
                            after: int | None, limit: int) -> list[SearchRecord]:
        """The tenant's searches newest first."""

    async def list_accesses(self, tenant_id: str, api_key_id: str | None, dataset_id: str | None, since: datetime | None,
                            until: datetime | None, after: int | None, limit: int) -> list[AccessView]:
        """The tenant's accesses (as buyer) newest first, each with whether it is disputed."""

    async def spend_rows(self, tenant_id: str, currency: str, group_by: str, since: datetime | None,
                         until: datetime | None) -> SpendRows:
        """A buyer's charges and accesses grouped by ``group_by``, and its refunds."""

    async def open_dispute(self, dispute: Dispute) -> Dispute | None:
        """Insert ``dispute`` unless its access already has one (then None); raise
        :class:`~engine.errors.Conflict` when the access's charge was already paid out."""

    async def get_dispute(self, dispute_id: str) -> Dispute | None: ...

    async def list_disputes(self, status: str | None, after: int | None, limit: int) -> list[Dispute]: ...

    async def resolve_dispute(self, dispute_id: str, outcome: str, by: str, now: datetime, refund: RefundEntries,
                              carry: Payout) -> Dispute:
        """Set an open dispute's outcome (``refunded``/``rejected``); a refund writes
        ``refund(access, dispute)``'s entries; when the access's month was already released,
        ``carry`` (the statement of the month of ``now``) is created if missing so the
        resolved amount is paid in it. Conflict when it is not open; NotFound when absent."""

    async def list_payouts(self, provider_tenant_id: str, since: datetime | None, until: datetime | None,
                           after: int | None, limit: int) -> list[Payout]: ...

    async def unreleased_payouts(self, provider_tenant_id: str) -> list[Payout]:
        """The provider's statements not yet released, oldest month first."""

    async def unreleased_sums(self, provider_tenant_id: str) -> list[UnreleasedSum]:
        """Σ per (period, currency, kind, held) of the provider's entries no statement paid yet."""

    async def next_settlement(self) -> tuple[datetime | None, datetime | None]:
        """The earliest ``period_end`` of a statement not yet marked pending (it turns pending
        then), and of an unreleased one (its release is that plus the hold)."""

    async def mark_pending(self, now: datetime, hold: timedelta) -> list[Payout]:
        """Mark pending every statement whose month ended by ``now`` and that is not marked
        yet, each with its ``payout.pending`` event (``release_at`` = month end + ``hold``),
        in one transaction: once per statement, whatever the number of processes."""

    async def due_payouts(self, ended_before: datetime) -> list[str]:
        """Ids of unreleased statements marked pending whose month ended at or before
        ``ended_before`` and that are the earliest unreleased of their provider and currency."""

    async def settle_payout(self, payout_id: str, now: datetime) -> Payout | None:
        """Release one statement exactly once: pay every unreleased entry of its provider
        and currency up to its month that is not under an open dispute; None when another
        process holds it, it was released already or is not marked pending yet, or an
        earlier one is still unreleased."""

    async def provider_usage(self, provider_tenant_id: str, dataset_id: str | None, currency: str, since: datetime | None,
                             until: datetime | None, stop_words: Sequence[str], top: int) -> ProviderUsage: ...

    async def money_totals(self) -> dict[str, int]:
        """Σ micros per ledger kind over the whole ledger, and Σ released per kind
        (``released:<kind>``): what the invariants check."""


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """``(start, end)`` of the UTC month ``YYYY-MM`` (end exclusive: the next month's start)."""
    from datetime import UTC

    year, month = int(period[:4]), int(period[5:7])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def statement_amounts(sums: dict[str, Any], held: int) -> tuple[int, int, int, int, int]:
    """``(gross, fee, refunds, held, earnings)`` of a statement from Σ per ledger kind of its
    entries: gross is net of refunds, fee net of fee refunds, earnings = gross − fee."""
    charges, refunds = int(sums.get("charge") or 0), -int(sums.get("refund") or 0)
    fees = int(sums.get("fee") or 0) + int(sums.get("fee_refund") or 0)
    gross = charges - refunds
    return gross, fees, refunds, held, gross - fees
