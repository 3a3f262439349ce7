"""Per-upload locks shared by the processes of one engine (``--workers``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from engine.keyed_locks import KeyedLocks

HOLDER = """
import sys, trio
from engine.keyed_locks import KeyedLocks
async def main():
    async with KeyedLocks(sys.argv[1]).hold(sys.argv[2]):
        print("held", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # until the test closes our stdin
trio.run(main)
"""


async def test_a_key_held_by_another_process_waits_until_it_is_released(tmp_path: Path) -> None:
    path = tmp_path / "uploads.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), "upl_1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        locks = KeyedLocks(path)
        async with locks.hold("upl_2"):  # another key is free at once
            pass
        with trio.move_on_after(0.3) as waited:
            async with locks.hold("upl_1"):
                raise AssertionError("took a key another process holds")
        assert waited.cancelled_caught
        assert holder.stdin is not None
        holder.stdin.close()
        with trio.fail_after(10):
            async with locks.hold("upl_1"):
                pass
    finally:
        holder.kill()
        holder.wait()


async def test_within_one_process_a_key_is_held_by_one_task_at_a_time(tmp_path: Path) -> None:
    locks = KeyedLocks(tmp_path / "uploads.lock")
    inside, most = 0, 0

    async def one() -> None:
        nonlocal inside, most
        async with locks.hold("upl_1"):
            inside += 1
            most = max(most, inside)
            await trio.sleep(0.01)
            inside -= 1

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert most == 1 and locks._locks == {}
