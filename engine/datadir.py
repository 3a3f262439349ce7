"""The data dir is private to the engine's user: directories 0700, files 0600; and its server secret.

It holds the SQLite database and its WAL (every hash, every session), the blobs (every
upload) and ``server.key``. :func:`secure_data_dir` sets the process umask to 077 at
start-up, so everything the engine creates afterwards (SQLite's files, blobs, temporary
files, artifacts) is private from the start, and tightens a data dir left broader by an
earlier release: when the dir itself or anything directly in it allows group or other
access, the whole tree is walked once and fixed, and the fix is logged.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import structlog

from engine.config import ConfigError

log = structlog.get_logger(__name__)

UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
_BROADER = stat.S_IRWXG | stat.S_IRWXO


def _broad(path: Path) -> bool:
    try:
        return bool(os.lstat(path).st_mode & _BROADER) and not path.is_symlink()
    except OSError:
        return False


def _tighten(path: str, mode: int) -> bool:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & _BROADER:
        return False
    os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
    return True


def secure_data_dir(data_dir: Path) -> int:
    """Set the umask, create ``data_dir`` (0700) if needed and fix what an older engine left
    readable by others; how many entries were tightened."""
    os.umask(UMASK)
    data_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if not _broad(data_dir) and not any(_broad(child) for child in data_dir.iterdir()):
        return 0
    fixed = int(_tighten(str(data_dir), DIR_MODE))
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            fixed += _tighten(os.path.join(root, name), DIR_MODE)
        for name in files:
            fixed += _tighten(os.path.join(root, name), FILE_MODE)
    log.warning("data_dir_permissions_fixed", data_dir=str(data_dir), entries=fixed,
                note="directories are now 0700 and files 0600; they were readable by other local users")
    return fixed


def load_secret(data_dir: Path) -> bytes:
    """The server secret (signing, sealing): created once, 0600, in the data dir."""
    path = data_dir / "server.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = bytes.fromhex(path.read_text().strip())
        if len(secret) < 32:
            raise ConfigError(f"{path} holds a secret shorter than 32 bytes") from None
        return secret
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.hex())
        fh.flush()
        os.fsync(fh.fileno())
    return secret
