"""The lines a real run of the generated program prints (player 0's log): LOGIT lines, and DEBUG lines
of a program built with --debug. Parsed here, compared with the reference by ``mpc-export verify``."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UserError


def read_log(path: Path) -> list[str]:
    """The log's lines; a missing path, a directory or an unreadable file is one clear error."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"MPC log {path} not found")
    if not path.is_file():
        raise UserError(f"MPC log {path} is not a file")
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise UserError(f"MPC log {path}: cannot read it: {exc.strerror}") from None


def _record(found: dict, key, value: int, path: Path, what: str) -> None:
    if key in found and found[key] != value:
        raise UserError(f"{path}: {what} printed twice with different values ({found[key]} and {value}); "
                        "is this the log of one run?")
    found[key] = value


def parse_mpc_log(path: Path) -> dict[int, dict[int, int]]:
    """LOGIT <execution> <index> <raw integer> lines printed by the generated program."""
    found: dict[int, dict[int, int]] = {}
    for line in read_log(path):
        m = re.search(r"LOGIT (\d+) (\d+) (-?\d+)", line)
        if m:
            _record(found.setdefault(int(m.group(1)), {}), int(m.group(2)), int(m.group(3)), path,
                    f"logit {m.group(2)} of execution {m.group(1)}")
    if not found:
        raise UserError(f"{path}: no LOGIT lines (is this the log of a run of the generated program?)")
    return found


def parse_debug_log(path: Path) -> dict[tuple[int, str], dict[tuple[int, int, int], int]]:
    """DEBUG <execution> <LAYER> <c> <y> <x> <raw integer> lines of a program built with --debug."""
    found: dict[tuple[int, str], dict[tuple[int, int, int], int]] = {}
    for line in read_log(path):
        m = re.search(r"DEBUG (\d+) (\w+) (\d+) (\d+) (\d+) (-?\d+)", line)
        if m:
            _record(found.setdefault((int(m.group(1)), m.group(2)), {}), (int(m.group(3)), int(m.group(4)), int(m.group(5))),
                    int(m.group(6)), path, f"layer {m.group(2)} element ({m.group(3)}, {m.group(4)}, {m.group(5)})")
    return found
