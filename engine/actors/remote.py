"""Actor messages across processes: a worker forwards ``ask`` to the process owning the actors.

With ``ipto serve --workers N`` on the embedded store, one process (the primary) runs every
dataset's actor, as a single process does; the other workers serve HTTP and forward each
actor message over a socket pair the primary made for them. The primary applies it through
its own :class:`~engine.actors.supervisor.Supervisor` (so one dataset's messages are still
applied one at a time, in the order they reach the primary) and sends back the answer only
when the supervisor's ``ask`` returns, that is after a durable write's fsync
(``Message.flush_by_asker``): a forwarded confirm answers only once its row is on disk.

Frames: a 4-byte big-endian length, then a pickle of ``(call id, payload)``. Requests carry
``(dataset id, message, timeout)``; answers carry ``("ok", value)`` or
``("error", class, message, details)`` for an :class:`~engine.errors.EngineError` (their
``details`` are not in ``args``, so plain pickling would drop them). Both ends are the same
program, started together by the primary: pickle is the trusted, local format.
"""

from __future__ import annotations

import itertools
import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from engine.errors import EngineError, ServiceUnavailable

log = structlog.get_logger(__name__)

_HEADER = struct.Struct(">I")


async def _read_frame(stream: trio.SocketStream, buffer: bytearray) -> Any:
    """The next frame's object, or None at end of stream. ``buffer`` keeps what is left over."""
    while True:
        if len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if len(buffer) >= _HEADER.size + size:
                frame = bytes(buffer[_HEADER.size:_HEADER.size + size])
                del buffer[:_HEADER.size + size]
                return pickle.loads(frame)
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buffer += chunk


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _encode_error(exc: EngineError) -> tuple[str, type[EngineError], str, Any]:
    return ("error", type(exc), exc.message, exc.details)


def _decode(answer: tuple[Any, ...]) -> Any:
    if answer[0] == "ok":
        return answer[1]
    _, cls, message, details = answer
    raise cls(message, details)


class LostPrimary(ServiceUnavailable):
    """The process owning the actors is gone (stopping or crashed)."""


@dataclass
class ActorLink:
    """The worker's end: :meth:`ask` sends a message to the primary and waits for its answer."""

    stream: trio.SocketStream
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _waiting: dict[int, trio.MemorySendChannel[tuple[Any, ...]]] = field(default_factory=dict)
    _send_lock: trio.StrictFIFOLock = field(default_factory=trio.StrictFIFOLock)
    _closed: bool = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read answers for the service's life; when the primary goes, every waiter gets :class:`LostPrimary`."""
        task_status.started()
        buffer = bytearray()
        try:
            while (frame := await _read_frame(self.stream, buffer)) is not None:
                call_id, answer = frame
                waiter = self._waiting.pop(call_id, None)
                if waiter is not None:
                    waiter.send_nowait(answer)
            log.warning("actor_link_closed")  # the primary stopped or died
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.warning("actor_link_closed")
        finally:
            self._closed = True
            for waiter in self._waiting.values():
                waiter.send_nowait(("error", LostPrimary, "the engine process owning the actors is gone; try again", None))
            self._waiting.clear()

    async def ask(self, dataset_id: str, message: Any, timeout: float) -> Any:
        if self._closed:
            raise LostPrimary("the engine process owning the actors is gone; try again")
        call_id = next(self._ids)
        send, recv = trio.open_memory_channel[tuple[Any, ...]](1)
        self._waiting[call_id] = send
        try:
            data = _frame((call_id, (dataset_id, message, timeout)))
            async with self._send_lock:
                await self.stream.send_all(data)
            # The primary answers within its own ask timeout; a little more here for the hop.
            with trio.fail_after(timeout + 5):
                answer = await recv.receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise LostPrimary("the engine process owning the actors is gone; try again") from None
        except trio.TooSlowError:
            raise ServiceUnavailable("the dataset's actor did not answer in time; try again", {"dataset_id": dataset_id}) from None
        finally:
            self._waiting.pop(call_id, None)
        return _decode(answer)


async def serve_link(stream: trio.SocketStream, supervisor: Any) -> None:
    """The primary's end for one worker: apply each forwarded message through ``supervisor``,
    concurrently (each dataset's actor still applies its own one at a time), and answer it."""
    send_lock = trio.StrictFIFOLock()

    async def answer(call_id: int, dataset_id: str, message: Any, timeout: float) -> None:
        try:
            result: tuple[Any, ...] = ("ok", await supervisor.ask(dataset_id, message, timeout))
        except EngineError as exc:  # a timeout too (ActorUnavailable)
            result = _encode_error(exc)
        data = _frame((call_id, result))
        async with send_lock:
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the worker is gone: nobody waits for this answer

    buffer = bytearray()
    async with trio.open_nursery() as nursery:
        try:
            while (frame := await _read_frame(stream, buffer)) is not None:
                call_id, (dataset_id, message, timeout) = frame
                nursery.start_soon(answer, call_id, dataset_id, message, timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
