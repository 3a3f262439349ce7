"""The supervisor: one actor per dataset, each with a bounded inbox, in one nursery.

* **One writer per dataset.** Every state change of a dataset, its objects and jobs is a
  :class:`~engine.actors.messages.Message` applied by that dataset's actor, one at a time,
  in arrival order.
* **Created atomically.** :meth:`Supervisor.ask` looks the actor up, creates its inbox,
  registers it and starts it with no ``await`` in between, so concurrent callers can never
  make two actors for one dataset.
* **Backpressure, not loss.** Inboxes are bounded memory channels: a full inbox makes the
  caller wait; nothing is dropped.
* **One answer per message**: the result, the domain error it raised, or
  :class:`ActorUnavailable` (crash, failed dataset, shutdown). Callers wait with
  ``trio.fail_after``.
* **Crash → restart.** The supervisor keeps both ends of every inbox, so a restarted actor
  picks up the queued messages. Restarts back off exponentially; past the budget the
  dataset is marked failed (its messages are refused) and the rest of the service runs on.
* **Idle → stop.** An actor with an empty inbox for ``idle_seconds`` unregisters and ends;
  the next message re-creates it.
* **One process.** Where several engine processes share the store, an actor serves only
  while it holds its dataset's lease (:mod:`engine.actors.leases`): a new actor waits for
  it. Asked for it by another process, the holder applies the messages it had queued at
  that moment, no more, and hands the lease to the asker; if messages arrived meanwhile
  it keeps its inbox and waits for the lease to come back. (Waiting for an empty inbox
  instead starved the asker under a steady load: its requests timed out.)
  Workers of one embedded engine (``--workers``) run no actors: they forward every
  message to the primary's supervisor (``remote``, :mod:`engine.actors.remote`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import outcome
import structlog
import trio

from engine.actors.leases import Leases
from engine.actors.messages import Message
from engine.config import ActorsConfig
from engine.errors import EngineError, ServiceUnavailable
from engine.store.base import flush_deferred

log = structlog.get_logger(__name__)


class ActorUnavailable(ServiceUnavailable):
    """The dataset's actor cannot answer: it crashed on this message, failed for good, or the service is stopping."""


@dataclass(frozen=True)
class Envelope:
    message: Message
    reply: trio.MemorySendChannel[outcome.Outcome[Any]]


@dataclass
class _Slot:
    send: trio.MemorySendChannel[Envelope]
    recv: trio.MemoryReceiveChannel[Envelope]
    failed: bool = False
    restarts: int = 0
    handover: bool = False  # another process wants the dataset: stop once the inbox is empty
    waiting: trio.CancelScope | None = None

    def request_handover(self) -> None:
        self.handover = True
        if self.waiting is not None:
            self.waiting.cancel()


@dataclass
class Supervisor:
    cfg: ActorsConfig
    context: Any = None  # what messages are applied with (the Services); bound before running
    leases: Leases | None = None  # where several processes share the store
    flush: Callable[[], Awaitable[None]] | None = None  # the store's flush, for Message.flush_by_asker
    remote: Any = None  # an ActorLink: this worker forwards every message to the primary's actors
    _slots: dict[str, _Slot] = field(default_factory=dict)
    _nursery: trio.Nursery | None = None
    _background: trio.Nursery | None = None
    _started: int = 0

    # -- life ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self, grace_seconds: float = 10.0) -> AsyncIterator[Supervisor]:
        """Own the actors for the duration of the block; on exit close every inbox, let the
        actors finish what is queued, and cancel what is left after ``grace_seconds``."""
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as background:
                self._nursery, self._background = nursery, background
                log.info("supervisor_started")
                try:
                    yield self
                finally:
                    # Background work (clocks, pipeline runs) parks now: what it was doing
                    # is in the store and resumes on the next start.
                    self._nursery = self._background = None
                    background.cancel_scope.cancel()
            for slot in list(self._slots.values()):
                slot.send.close()  # actors answer what is queued, then end
            nursery.cancel_scope.deadline = trio.current_time() + grace_seconds
            log.info("supervisor_stopping", actors=len(self._slots))

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run background work (pipeline runs, clocks) under the supervisor."""
        if self._background is None:
            raise ActorUnavailable("the service is stopping")
        self._background.start_soon(fn, *args)

    @property
    def actor_count(self) -> int:
        return sum(1 for slot in self._slots.values() if not slot.failed)

    def inbox_levels(self) -> tuple[int, int, int]:
        """``(live actors, messages waiting in all their inboxes, the fullest inbox)`` (metrics)."""
        depths = [slot.send.statistics().current_buffer_used for slot in self._slots.values() if not slot.failed]
        return len(depths), sum(depths), max(depths, default=0)

    @property
    def actors_started(self) -> int:
        return self._started

    def is_failed(self, dataset_id: str) -> bool:
        slot = self._slots.get(dataset_id)
        return slot is not None and slot.failed

    # -- messages ---------------------------------------------------------------------
    def _slot(self, dataset_id: str) -> _Slot:
        # No await in here: look-up, creation, registration and start are one atomic step.
        slot = self._slots.get(dataset_id)
        if slot is None:
            if self._nursery is None:
                raise ActorUnavailable("the service is stopping")
            send, recv = trio.open_memory_channel[Envelope](self.cfg.inbox_size)
            slot = self._slots[dataset_id] = _Slot(send, recv)
            self._started += 1
            self._nursery.start_soon(self._run_actor, dataset_id, slot)
        if slot.failed:
            raise ActorUnavailable("this dataset's actor has failed; operators have been told", {"dataset_id": dataset_id})
        return slot

    async def ask(self, dataset_id: str, message: Message, timeout: float | None = None) -> Any:
        """Deliver ``message`` to the dataset's actor and wait for its one answer."""
        if self.remote is not None:
            return await self.remote.ask(dataset_id, message, timeout or self.cfg.ask_timeout_seconds)
        slot = self._slot(dataset_id)
        reply_send, reply_recv = trio.open_memory_channel[outcome.Outcome[Any]](1)
        envelope = Envelope(message, reply_send)
        try:
            slot.send.send_nowait(envelope)
        except trio.WouldBlock:
            await slot.send.send(envelope)  # a full inbox pushes back on the caller
        except trio.ClosedResourceError:
            raise ActorUnavailable("the service is stopping") from None
        try:
            with trio.fail_after(timeout or self.cfg.ask_timeout_seconds):
                result = await reply_recv.receive()
                if message.flush_by_asker and self.flush is not None:
                    await self.flush()  # the actor did not wait for the disk: the answer does
        except trio.TooSlowError:
            # 503, not 500: the service is overloaded or the dataset is busy elsewhere. The
            # message may still be applied; every message is safe to send again.
            raise ActorUnavailable("the dataset's actor did not answer in time; try again", {"dataset_id": dataset_id}) from None
        return result.unwrap()

    # -- the actor ----------------------------------------------------------------------
    async def _run_actor(self, dataset_id: str, slot: _Slot) -> None:
        structlog.contextvars.clear_contextvars()  # not the request that happened to create us
        structlog.contextvars.bind_contextvars(dataset_id=dataset_id)
        while True:
            try:
                if self.leases is None:
                    await self._serve(dataset_id, slot)
                    return
                slot.handover = False
                done: bool | None = None
                async with self.leases.hold(f"dataset:{dataset_id}", wait=True, on_wanted=slot.request_handover):
                    done = await self._serve(dataset_id, slot)
                if done:
                    return
                if done is None:
                    log.warning("actor_lease_lost")  # cancelled: serve again once the lease is back
                # else handed over with messages queued since: they wait for the lease to come back
            except Exception:
                slot.restarts += 1
                log.exception("actor_crashed", restarts=slot.restarts)
                if slot.restarts > self.cfg.restart_budget:
                    slot.failed = True
                    log.error("actor_failed", restarts=slot.restarts)
                    self._refuse_queued(slot)
                    return
                await trio.sleep(self.cfg.restart_backoff_seconds * 2 ** (slot.restarts - 1))
                log.info("actor_restarting", restarts=slot.restarts)

    async def _serve(self, dataset_id: str, slot: _Slot) -> bool:
        """Apply messages; True once the actor is done (idle, shutting down, or handed over
        with an empty inbox, unregistered), False if it handed the dataset over with
        messages still queued (its slot stays registered: it must wait for the lease)."""
        budget = -1  # once another process asks: the messages still to apply before handing over
        while True:
            if slot.handover:
                if budget < 0:
                    # What is queued now, no more: the asker waits one turn however busy we stay.
                    budget = slot.recv.statistics().current_buffer_used
                if budget == 0:
                    if slot.recv.statistics().current_buffer_used == 0:
                        # Inbox empty and no await since: hand over and stop.
                        self._unregister(dataset_id, slot)
                        log.debug("actor_handed_over")
                        return True
                    log.debug("actor_handed_over_busy", queued=slot.recv.statistics().current_buffer_used)
                    return False
                try:
                    envelope = slot.recv.receive_nowait()
                except trio.WouldBlock:
                    self._unregister(dataset_id, slot)
                    log.debug("actor_handed_over")
                    return True
                except trio.EndOfChannel:
                    return True
                budget -= 1
            else:
                with trio.move_on_after(self.cfg.idle_seconds) as idle:
                    slot.waiting = idle
                    try:
                        envelope = await slot.recv.receive()
                    except trio.EndOfChannel:
                        return True  # shutting down: everything queued has been answered
                    finally:
                        slot.waiting = None
                if idle.cancelled_caught:
                    if slot.handover:
                        continue
                    # Nothing arrived for idle_seconds and, without an await since, nothing is
                    # queued: unregister and stop. The next message re-creates the actor.
                    self._unregister(dataset_id, slot)
                    log.debug("actor_idle_stopped")
                    return True
            await self._apply(envelope)

    def _unregister(self, dataset_id: str, slot: _Slot) -> None:
        if self._slots.get(dataset_id) is slot:
            del self._slots[dataset_id]

    async def _apply(self, envelope: Envelope) -> None:
        try:
            if envelope.message.flush_by_asker and self.flush is not None:
                with flush_deferred():
                    result = await envelope.message.apply(self.context)
            else:
                result = await envelope.message.apply(self.context)
        except trio.Cancelled:
            self._answer(envelope, outcome.Error(ActorUnavailable("the dataset's actor stopped during this request; try again")))
            raise
        except EngineError as exc:
            self._answer(envelope, outcome.Error(exc))
        except Exception:
            self._answer(envelope, outcome.Error(ActorUnavailable("the dataset's actor failed on this request; it was restarted")))
            raise
        else:
            self._answer(envelope, outcome.Value(result))

    @staticmethod
    def _answer(envelope: Envelope, result: outcome.Outcome[Any]) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.WouldBlock):
            envelope.reply.send_nowait(result)  # the caller may have given up; that is fine

    def _refuse_queued(self, slot: _Slot) -> None:
        while True:
            try:
                envelope = slot.recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            self._answer(envelope, outcome.Error(ActorUnavailable("this dataset's actor has failed")))
