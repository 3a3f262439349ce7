"""Store-wide levels for ``GET /metrics`` (mixed into :class:`PgStore`)."""

from __future__ import annotations

from typing import Any

from engine.store.gauges import OPERATIONAL_COUNTS_SQL, counts_of
from engine.store.postgres.access import PgAccess, PgConn


class GaugesMixin(PgAccess):
    async def operational_counts(self) -> dict[str, dict[str, int]]:
        """Unfinished jobs and imports, and the review queue, by state."""

        async def op(c: PgConn) -> list[Any]:
            return list(await c.fetch(OPERATIONAL_COUNTS_SQL))

        return counts_of([tuple(r) for r in await self.read(op)])
