"""The base of every message a dataset actor applies.

A message is a frozen dataclass naming one state change; ``apply`` performs it with the
service's parts (``ctx``, the :class:`~engine.services.Services`) and returns the answer.
The actor applies its messages one at a time, so ``apply`` may read, decide and write
without racing another change of the same dataset.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Message:
    """Subclass as ``@dataclass(frozen=True)`` and implement :meth:`apply`.

    ``flush_by_asker``: apply only writes to the store (nothing outside it acts on those
    writes before the answer), so the actor answers as soon as they are committed and goes
    on, and the asker waits for them to reach the disk (:meth:`Supervisor.ask`). Messages
    that delete bytes or otherwise act outside the store keep the default.
    """

    flush_by_asker: ClassVar[bool] = False

    async def apply(self, ctx: Any) -> Any:
        raise NotImplementedError
