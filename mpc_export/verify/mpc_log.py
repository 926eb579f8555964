"""The lines a real run of the generated program prints (player 0's log): LOGIT lines, and DEBUG lines
of a program built with --debug. Parsed here, compared with the reference by ``mpc-export verify``."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UserError


def parse_mpc_log(path: Path) -> dict[int, dict[int, int]]:
    """LOGIT <execution> <index> <raw integer> lines printed by the generated program."""
    found: dict[int, dict[int, int]] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = re.search(r"LOGIT (\d+) (\d+) (-?\d+)", line)
        if m:
            found.setdefault(int(m.group(1)), {})[int(m.group(2))] = int(m.group(3))
    if not found:
        raise UserError(f"{path}: no LOGIT lines (is this the log of a run of the generated program?)")
    return found


def parse_debug_log(path: Path) -> dict[tuple[int, str], dict[tuple[int, int, int], int]]:
    """DEBUG <execution> <LAYER> <c> <y> <x> <raw integer> lines of a program built with --debug."""
    found: dict[tuple[int, str], dict[tuple[int, int, int], int]] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = re.search(r"DEBUG (\d+) (\w+) (\d+) (\d+) (\d+) (-?\d+)", line)
        if m:
            found.setdefault((int(m.group(1)), m.group(2)), {})[(int(m.group(3)), int(m.group(4)), int(m.group(5)))] = int(m.group(6))
    return found
