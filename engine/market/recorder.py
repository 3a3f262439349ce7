"""Recording searches and impressions in batches, off the search's path.

A search hands its record to :meth:`Recorder.add` (no I/O) and answers; a background
task writes what gathered in one transaction every ``FLUSH_SECONDS`` or as soon as
``FLUSH_ITEMS`` are waiting, so recording costs a search a list append, not a commit.
What is buffered is written at shutdown too; a crash of the process loses at most the
last ``FLUSH_SECONDS`` of recordings (never an access: those are written at once).

``FLUSH_ITEMS`` only bounds the buffer's memory (20,000 items, a few MiB): under load the
interval, not the count, sets how often recording commits. Each commit is a change to the
database file, and on SQLite every reader connection drops its whole page cache at its
next read after a change (WAL), so the index pages the searches walk are read again. At
500 items (the old bound) 260 searches/s committed ~6 times a second. Without recording
at all lexical search was 12–15 % faster than with commits every 0.5 s, and commits every
2 s (the default) gave nearly all of it back (bench/README.md, "Ninth run").
``pending_search`` answers for searches not yet written, so a cursor or an access that
names a search just made still finds it.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
import trio

from engine.store.base import Store
from engine.store.records import Impression, SearchRecord

log = structlog.get_logger(__name__)

FLUSH_SECONDS = 2.0
FLUSH_ITEMS = 20_000  # the buffer's bound, not a flush rhythm (see above)


class Recorder:
    def __init__(self, store: Store, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self._searches: list[SearchRecord] = []
        self._impressions: list[Impression] = []
        self._more: list[tuple[str, int]] = []
        self._pending: dict[str, SearchRecord] = {}
        self._wake = trio.Event()
        self._flush_lock = trio.Lock()

    def add(self, search: SearchRecord | None, impressions: Sequence[Impression], more_results: tuple[str, int] | None = None) -> None:
        if search is not None:
            self._searches.append(search)
            self._pending[search.id] = search
        self._impressions.extend(impressions)
        if more_results is not None and more_results[1]:
            self._more.append(more_results)
        if len(self._searches) + len(self._impressions) >= FLUSH_ITEMS:
            self._wake.set()

    def pending_search(self, tenant_id: str, search_id: str) -> SearchRecord | None:
        found = self._pending.get(search_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    async def flush(self) -> None:
        async with self._flush_lock:
            searches, impressions, more = self._searches, self._impressions, self._more
            if not (searches or impressions or more):
                return
            self._searches, self._impressions, self._more = [], [], []
            try:
                await self.store.record_searches(searches, impressions, more)
            except Exception:
                log.exception("recording_failed", searches=len(searches), impressions=len(impressions))
                # keep them for the next try (bounded: a store that stays down drops the oldest)
                self._searches = (searches + self._searches)[-50_000:]
                self._impressions = (impressions + self._impressions)[-500_000:]
                self._more = (more + self._more)[-50_000:]
                return
            for s in searches:
                self._pending.pop(s.id, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush periodically until cancelled, then once more (shielded)."""
        task_status.started()
        try:
            while True:
                with trio.move_on_after(self.flush_seconds):
                    await self._wake.wait()
                self._wake = trio.Event()
                await self.flush()
        finally:
            with trio.CancelScope(shield=True):
                await self.flush()
