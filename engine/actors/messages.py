"""The base of every message a dataset actor applies.

A message is a frozen dataclass naming one state change; ``apply`` performs it with the
service's parts (``ctx``, the :class:`~engine.services.Services`) and returns the answer.
The actor applies its messages one at a time, so ``apply`` may read, decide and write
without racing another change of the same dataset.
"""

from __future__ import annotations

from typing import Any


class Message:
    """Subclass as ``@dataclass(frozen=True)`` and implement :meth:`apply`."""

    async def apply(self, ctx: Any) -> Any:
        raise NotImplementedError
