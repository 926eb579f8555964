"""One real run at a time per user (each FANNG player holds up to ~6.4 GB): an exclusive lock on a file in a directory
only this user can write (``$XDG_RUNTIME_DIR/mpc-export``, else ``~/.cache/mpc-export``), opened without
following links, never truncated."""

from __future__ import annotations

import fcntl
import os
import stat
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError


def lock_directory() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mpc-export"


def _private_directory(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path} is a symbolic link or not a directory: refusing to keep the run lock there")
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise UserError(f"{path} belongs to another user or others can write it: refusing to keep the run lock there")
    return path


@contextmanager
def run_lock():
    """Hold the per-user run lock, or refuse in one line if another run holds it."""
    path = _private_directory(lock_directory()) / "run.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise UserError(f"{path}: cannot open the run lock ({exc.strerror}); a symbolic link there is refused") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"another mpc-export run is in progress (lock {path}); each FANNG player needs up to ~6.4 GB: "
                            "wait for it to finish") from None
        yield path
    finally:
        os.close(fd)
