"""Players' output, streamed and filtered: FANNG-MPC's secure build prints one line per TRIPLE instruction
("Not Enough Random Beaver triples loaded to the memory, switching to Offline Factory Generation": 2.1 M
lines, 200 MB per player for the seed model). Each player's stdout is read line by line as it comes;
known repetitive lines are counted, not kept, and everything else goes to the player's log, which is
created afresh (never through a link, never over an existing file)."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from ..errors import UserError

# runtime chatter repeated per preprocessing call: (pattern, how the summary names it)
REPEATED = [(re.compile(rb"^Not Enough Random \w[\w ]* loaded to the memory"), "'Not Enough Random ... loaded to the memory' (one per preprocessing call)")]
MAX_LINE = 64 * 1024  # longer lines are cut (a log is for people)


def fresh_directory(parent: Path, prefix: str) -> Path:
    """A new directory parent/<prefix>-<n>, created here (n the first free number); refuses a parent that
    is a symbolic link or not a directory."""
    if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
        raise UserError(f"{parent} is a symbolic link or not a directory: refusing to write logs through it")
    parent.mkdir(exist_ok=True)
    for n in range(1, 100_000):
        candidate = parent / f"{prefix}-{n}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise UserError(f"{parent}: no free log directory name")


def create_new(path: Path):
    """Open a new file for writing: never through a symbolic link, never over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    return os.fdopen(fd, "wb")


class FilteredLog(threading.Thread):
    """Copies one player's output stream to ``path`` line by line, counting instead of keeping the
    REPEATED lines; ``summary()`` says what was left out."""

    def __init__(self, stream, path: Path):
        super().__init__(daemon=True)
        self.stream, self.path = stream, path
        self.omitted = [0] * len(REPEATED)
        self.out = create_new(path)

    def run(self) -> None:
        with self.out:
            for line in iter(lambda: self.stream.readline(MAX_LINE), b""):
                for i, (pattern, _) in enumerate(REPEATED):
                    if pattern.match(line):
                        self.omitted[i] += 1
                        break
                else:
                    self.out.write(line)
            self.out.write(self.summary().encode())

    def summary(self) -> str:
        return "".join(f"[mpc-export: {n:,} lines {what} omitted]\n" for n, (_, what) in zip(self.omitted, REPEATED) if n)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a (filtered, so small) log."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
