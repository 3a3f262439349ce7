"""Named leases: which engine process does what when several share one PostgreSQL.

A lease is a row ``(name, owner, expires_at)`` in the store, timed by the database's
clock. This process renews all it holds with one heartbeat every ``ttl / 3``; a process
that dies (even ``kill -9``) stops renewing, and after ``ttl`` any other may take over.
A process that cannot renew for most of the ttl gives its leases up on its own before
anyone could take them over (it cancels the holders), so two owners never act at once.

Names in use: ``dataset:<id>`` (a dataset's actor), ``job:<id>`` (a pipeline run),
``imports:<dataset id>`` (a dataset's import runner), ``review-clock``.

Wake-ups travel by LISTEN/NOTIFY: releasing a lease tells every process (so a waiter
retries at once instead of at its next poll), and a process waiting for a lease asks the
holder to hand it over, naming itself. A holder that hands over on request (a dataset's
actor, after the messages it had queued when asked) gives the lease *to that process*
rather than freeing it: otherwise the holder, still busy, would take the lease straight
back before the waiter woke, and a busy dataset would starve the other processes' requests
(they timed out after ``actors.ask_timeout_seconds``). A lease given this way expires after
a third of the ttl unless the receiver takes it up, so a waiter that left in the meantime
delays the dataset by that much at most.

On a store only one process can use (SQLite: the data dir is locked), every lease is
granted at once and nothing is written.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from engine.errors import EngineError

log = structlog.get_logger(__name__)


@dataclass
class _Held:
    scope: trio.CancelScope
    on_wanted: Callable[[], None] | None
    wanted_by: str | None = None  # the last process that asked for it during this hold


@dataclass
class _Local:
    lock: trio.Lock = field(default_factory=trio.Lock)
    users: int = 0


@dataclass
class Leases:
    store: Any
    ttl_seconds: float = 15.0
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}")
    _held: dict[str, _Held] = field(default_factory=dict)
    _released: dict[str, trio.Event] = field(default_factory=dict)
    _watchers: dict[str, list[Callable[[], None]]] = field(default_factory=dict)
    _local: dict[str, _Local] = field(default_factory=dict)

    @property
    def shared(self) -> bool:
        """Whether other processes may share the store (else every lease is granted at once)."""
        return bool(getattr(self.store, "shared", False))

    def held(self) -> list[str]:
        return sorted(self._held)

    # -- background ---------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeats and notifications, for the service's life."""
        if not self.shared:
            task_status.started()
            return
        structlog.contextvars.clear_contextvars()
        async with self.store.notifications() as notes:
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat)
                async for payload in notes:
                    self._on_note(payload)

    def _on_note(self, payload: str) -> None:
        verb, _, name = payload.partition(" ")
        if verb == "released":
            event = self._released.pop(name, None)
            if event is not None:
                event.set()
            for callback in self._watchers.pop(name, []):
                try:
                    callback()
                except Exception:  # e.g. the service is stopping; the next start resumes the work
                    log.exception("lease_watcher_failed", lease=name)
        elif verb == "wanted":
            name, _, asker = name.partition(" ")
            held = self._held.get(name)
            if held is not None and held.on_wanted is not None and asker != self.owner:
                held.wanted_by = asker or None
                held.on_wanted()

    async def _heartbeat(self) -> None:
        last_ok = trio.current_time()
        while True:
            await trio.sleep(self.ttl_seconds / 3)
            names = list(self._held)
            try:
                kept = await self.store.renew_leases(self.owner, names, self.ttl_seconds)
                last_ok = trio.current_time()
            except EngineError as exc:
                log.warning("lease_renewal_failed", error=exc.message, held=len(names))
                if trio.current_time() - last_ok < self.ttl_seconds * 0.6:
                    continue
                kept = set()  # we can no longer prove we hold anything: stop acting now
            for name in names:
                held = self._held.get(name)
                if name not in kept and held is not None:
                    log.warning("lease_lost", lease=name)
                    held.scope.cancel()

    # -- holding ------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def hold(self, name: str, *, wait: bool, on_wanted: Callable[[], None] | None = None) -> AsyncIterator[bool]:
        """Hold ``name`` for the block, which receives whether it got the lease.

        ``wait=True`` waits until it is free (asking its holder to hand it over);
        ``wait=False`` gives up at once if another process holds it. If the lease is lost
        (renewal failed), the block is cancelled and this returns normally: callers check
        or simply go round again. Within this process, holds of one name follow each
        other: a new holder starts only once the previous one has released the row."""
        if not self.shared:
            yield True
            return
        local = self._local.setdefault(name, _Local())
        if not wait and local.lock.locked():
            yield False
            return
        local.users += 1
        try:
            async with local.lock:
                async with self._held_lease(name, wait, on_wanted) as got:
                    yield got
        finally:
            local.users -= 1
            if local.users == 0:
                del self._local[name]

    @contextlib.asynccontextmanager
    async def _held_lease(self, name: str, wait: bool, on_wanted: Callable[[], None] | None) -> AsyncIterator[bool]:
        if wait:
            await self._acquire_waiting(name)
        elif not await self.store.acquire_lease(name, self.owner, self.ttl_seconds):
            yield False
            return
        scope = trio.CancelScope()
        held = self._held[name] = _Held(scope, on_wanted)
        try:
            with scope:
                yield True
        finally:
            del self._held[name]
            # Handed over on request: to the process that asked (see the module docstring).
            to = held.wanted_by if on_wanted is not None and not scope.cancel_called else None
            with trio.CancelScope(shield=True):
                try:
                    await self.store.release_lease(name, self.owner, to=to, ttl_seconds=self.ttl_seconds / 3)
                except EngineError as exc:  # it expires by itself
                    log.warning("lease_release_failed", lease=name, error=exc.message)

    def watch_release(self, name: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when another process releases ``name``."""
        if self.shared:
            self._watchers.setdefault(name, []).append(callback)

    async def _acquire_waiting(self, name: str) -> None:
        while True:
            released = self._released.setdefault(name, trio.Event())
            if await self.store.acquire_lease(name, self.owner, self.ttl_seconds):
                return
            await self.store.notify(f"wanted {name} {self.owner}")
            # A release wakes us at once; a holder that died is noticed when its lease expires.
            with trio.move_on_after(self.ttl_seconds / 3):
                await released.wait()
