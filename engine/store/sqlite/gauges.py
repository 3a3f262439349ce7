"""Store-wide levels for ``GET /metrics`` (mixed into :class:`SqliteStore`)."""

from __future__ import annotations

from engine.store.gauges import OPERATIONAL_COUNTS_SQL, counts_of
from engine.store.sqlite.access import SqliteAccess


class GaugesMixin(SqliteAccess):
    async def operational_counts(self) -> dict[str, dict[str, int]]:
        """Unfinished jobs and imports, and the review queue, by state."""
        rows = await self.read(lambda c: c.execute(OPERATIONAL_COUNTS_SQL).fetchall(), single=True)
        return counts_of([tuple(r) for r in rows])
