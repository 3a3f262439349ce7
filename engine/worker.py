"""``python -m engine.worker``: one worker process of ``ipto serve --workers N``.

Started only by the primary (:mod:`engine.workers`), which writes a
:class:`~engine.workers.WorkerSpec` to its stdin. SIGTERM or SIGINT drains and stops it.
"""

from __future__ import annotations

import signal
import sys

import trio

from engine.logging import configure_logging
from engine.service import ServiceHandle, run_service
from engine.workers import WorkerSpec, read_spec


async def _run(spec: WorkerSpec) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def service(*, task_status: trio.TaskStatus[ServiceHandle] = trio.TASK_STATUS_IGNORED) -> None:
                await run_service(spec.cfg, worker=spec, task_status=task_status)
                nursery.cancel_scope.cancel()

            handle: ServiceHandle = await nursery.start(service)
            async for _ in signals:
                handle.stop()


def main() -> None:
    spec = read_spec(sys.stdin.buffer)
    configure_logging(spec.cfg.log)
    trio.run(_run, spec)


if __name__ == "__main__":
    main()
