"""Who holds a delivery lease: a name another process can tell is dead.

A delivery claimed by a process is leased to it until ``lease_until`` (``webhooks.lease_seconds``);
nobody else claims it before then. A process that dies (even ``kill -9``) leaves its leases
behind. A delivery process starting on the same machine takes over the leases of owners it
can prove dead, at once; every other lease waits for its expiry. Never "every lease": with
several engine processes (``ipto serve --workers N``, a restarted delivery process, several
``ipto serve`` on one PostgreSQL) the others' leases are live.

An owner is ``<machine>:<pid>:<start>.<token>``. ``<machine>`` is the host name, the kernel's
boot id and the PID namespace, so a PID is only ever compared within the namespace it was
given in (two containers with one host name do not share PIDs). ``<start>`` is when the
process started (``/proc/<pid>/stat``, clock ticks since boot): a live PID that started at
another time is another process that was given the same PID, so the owner is dead. The
random token tells this process from an earlier one that had our own PID. A process killed
but not yet reaped (a zombie: its parent died too and the machine's init reaps it later, up
to seconds later in some containers) is dead: it holds no lease it can still use. Where the
start time cannot be read (no ``/proc``), a live PID is taken as alive and its leases expire.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import socket

_ours: set[str] = set()  # owners made in this process (tests run several services in one)

@functools.cache
def machine() -> str:
    """This machine and PID namespace, as owners name it."""
    boot = ns = "?"
    with contextlib.suppress(OSError):
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()[:8]  # noqa: SIM115 - read once
    with contextlib.suppress(OSError):
        ns = os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    return f"{socket.gethostname()}/{boot}/{ns}".replace(":", "_")


def _stat(pid: int) -> tuple[str, str] | None:
    """The state letter and start time (clock ticks after boot) of process ``pid``, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after the name, which may hold spaces and ")"
    return (fields[0], fields[19]) if len(fields) > 19 else None  # fields 3 and 22 of proc(5)


def new_owner() -> str:
    """A lease owner naming this process (a new one at each call)."""
    pid = os.getpid()
    stat = _stat(pid)
    owner = f"{machine()}:{pid}:{stat[1] if stat else '?'}.{secrets.token_hex(6)}"
    _ours.add(owner)
    return owner


def owner_is_dead(owner: str) -> bool:
    """Whether ``owner`` is certainly not running any more. False when it cannot be told
    (another machine, an unknown format): its leases expire."""
    where, _, rest = owner.partition(":")
    pid_text, _, token = rest.partition(":")
    if where != machine() or not pid_text.isdigit() or not token:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in _ours  # not made here: an earlier process that had our PID
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, someone else's: it may still be another program that was given the PID
    stat = _stat(pid)
    if stat is None:
        return False  # cannot be told: its leases expire
    state, started = stat
    if state in ("Z", "X"):
        return True  # killed, not yet reaped
    start, dot, _ = token.partition(".")
    return bool(dot) and start.isdigit() and start != started  # the PID was given to another process since
