"""Who holds a delivery lease: a name another process can tell is dead.

A delivery claimed by a process is leased to it until ``lease_until`` (``webhooks.lease_seconds``);
nobody else claims it before then. A process that dies (even ``kill -9``) leaves its leases
behind. A delivery process starting on the same machine takes over the leases of owners it
can prove dead, at once; every other lease waits for its expiry. Never "every lease": with
several engine processes (``ipto serve --workers N``, a restarted delivery process, several
``ipto serve`` on one PostgreSQL) the others' leases are live.

An owner is ``<machine>:<pid>:<token>``. ``<machine>`` is the host name, the kernel's boot id
and the PID namespace, so a PID is only ever compared within the namespace it was given in
(two containers with one host name do not share PIDs). The random token tells this process
from an earlier one that had the same PID. A PID that is alive may belong to another
program (PIDs are reused): that owner is taken as alive, and its leases simply expire.
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


def new_owner() -> str:
    """A lease owner naming this process (a new one at each call)."""
    owner = f"{machine()}:{os.getpid()}:{secrets.token_hex(6)}"
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
        return False  # alive, someone else's
    return False
