"""Processes under test: start them on loopback, watch their memory and CPU, always stop them.

Every server (the engine, the ceiling app, the tus peer) runs in its own session, so a
Ctrl-C in the terminal reaches only the harness, whose ``finally`` then stops each server
with SIGTERM and, if it has not exited within its grace period, SIGKILLs its whole process
group (the engine's record reader and torch's workers included). Each child also gets
``PR_SET_PDEATHSIG``: should the harness itself be killed with SIGKILL, the kernel sends
the servers SIGTERM, so nothing is left running either way.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
MiB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")

_PR_SET_PDEATHSIG = 1
_live: dict[int, subprocess.Popen[bytes]] = {}


def _child_setup() -> None:
    """In the child, before exec: die with the harness."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP end the harness like Ctrl-C does, so every ``finally`` runs."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int, key: str) -> float:
    """A ``kB`` line of /proc/PID/status (VmHWM, VmRSS) in MiB; NaN once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError):
        return float("nan")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (an engine's ``--workers``, its record readers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants."""
    return sum(c for c in (cpu_seconds(p) for p in process_tree(pid)) if c == c)


def tree_status(pid: int, key: str) -> float:
    """A /proc status figure (VmHWM, VmRSS) summed over ``pid`` and its live descendants
    (resident pages two processes share, such as libraries, are counted in each)."""
    values = [v for v in (proc_status(p, key) for p in process_tree(pid)) if v == v]
    return sum(values) if values else float("nan")


def sha256_file(path: Path, offset: int = 0, length: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = path.stat().st_size - offset if length is None else length
        while left:
            chunk = fh.read(min(4 * MiB, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def random_file(path: Path, mib: int) -> Path:
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(MiB))
    return path


@dataclass
class Server:
    """A running server process: ``base`` URL, ``pid``, where its output goes."""

    name: str
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_rss_mib(self) -> float:
        return tree_status(self.pid, "VmHWM")

    def rss_mib(self) -> float:
        return tree_status(self.pid, "VmRSS")

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pid)

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _wait_ready(server: Server, probe: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode} before it was ready:\n{server.tail()}")
        try:
            with urllib.request.urlopen(server.base + probe, timeout=2) as reply:
                if reply.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s:\n{server.tail()}")


def stop(server: Server, grace: float = 30.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL the whole process group."""
    proc = server.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            print(f"  {server.name} did not stop within {grace:.0f} s: killing it", file=sys.stderr, flush=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group (children)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    _live.pop(proc.pid, None)


@contextlib.contextmanager
def running(name: str, argv: Sequence[str], base: str, log: Path, *, probe: str, env: dict[str, str] | None = None,
            cwd: Path = ROOT, ready_timeout: float = 120.0, grace: float = 30.0) -> Iterator[Server]:
    """Start ``argv`` in its own session, wait until ``base + probe`` answers, stop it at exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True, preexec_fn=_child_setup)
    _live[proc.pid] = proc
    server = Server(name, base, proc, log)
    try:
        _wait_ready(server, probe, ready_timeout)
        yield server
    finally:
        stop(server, grace)


def engine(data_dir: Path, *, env: dict[str, str] | None = None, log_level: str = "warning",
           grace: float = 60.0, cpus: str | None = None) -> contextlib.AbstractContextManager[Server]:
    """``python -m engine serve`` on a free loopback port with its own data dir
    (``cpus``: under ``taskset -c cpus``, its workers included)."""
    port = free_port()
    full_env = {**os.environ, "IPTO_LOG_LEVEL": log_level, "IPTO_LOG_FORMAT": "json", **(env or {})}
    argv = [sys.executable, "-m", "engine", "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    if cpus is not None:
        argv = [sys.executable, "-c", f"import os, sys; os.sched_setaffinity(0, {{{cpus}}}); os.execv(sys.executable, sys.argv[1:])",
                *argv]
    return running("engine", argv, f"http://127.0.0.1:{port}", data_dir.parent / f"{data_dir.name}.log",
                   probe="/v1/health", env=full_env, grace=grace)


def ceiling(log: Path) -> contextlib.AbstractContextManager[Server]:
    """The bare Hypercorn + Quart-Trio app of :mod:`bench.ceiling`."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.ceiling", "--host", "127.0.0.1", "--port", str(port)]
    return running("ceiling", argv, f"http://127.0.0.1:{port}", log, probe="/v1/ping", env=dict(os.environ))


def stop_all() -> None:
    """Last resort (atexit): stop whatever is still registered."""
    for proc in list(_live.values()):
        stop(Server("leftover", "", proc, Path(os.devnull)), grace=5)
