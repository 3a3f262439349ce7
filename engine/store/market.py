"""What both stores' marketplace parts share: the inputs of a price, and the pricer's shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.store.records import Access, LedgerEntry


@dataclass(frozen=True)
class PriceInputs:
    """What a retrieval's price depends on, read in the access's own transaction."""

    paid_this_period: bool  # the buyer already paid for this dataset this UTC month (flat rate)
    recent_accesses: int  # the dataset's accesses by other tenants in the last 30 days (demand curve)


# Given the access as drafted (amounts 0) and the inputs, the access as charged and its
# ledger entries. A pure function: the store may call it again when it retries a transaction.
AccessPricer = Callable[[Access, PriceInputs], tuple[Access, list[LedgerEntry]]]
