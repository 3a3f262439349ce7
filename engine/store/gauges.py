"""The store-wide levels ``GET /metrics`` reports, as SQL both backends run unchanged.

Each query reads an index (``jobs_unfinished``, ``imports_queue``, ``objects_review_age``)
and returns ``(kind, state, count)`` rows.
"""

from __future__ import annotations

from typing import Any

OPERATIONAL_COUNTS_SQL = """
SELECT 'jobs', status, count(*) FROM jobs WHERE status IN ('queued', 'running') GROUP BY status
UNION ALL
SELECT 'imports', status, count(*) FROM imports WHERE status IN ('queued', 'processing') GROUP BY status
UNION ALL
SELECT 'review', review_state, count(*) FROM objects
 WHERE review_state IN ('staged', 'under_review') AND uploaded_at IS NOT NULL AND status != 'deleted'
 GROUP BY review_state
"""


def counts_of(rows: list[tuple[Any, ...]]) -> dict[str, dict[str, int]]:
    """``{"jobs": {"queued": n, ...}, "imports": {...}, "review": {...}}`` from ``(kind, state, count)`` rows."""
    out: dict[str, dict[str, int]] = {"jobs": {}, "imports": {}, "review": {}}
    for kind, state, count in rows:
        out[str(kind)][str(state)] = int(count)
    return out
