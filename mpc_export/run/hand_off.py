"""What each party receives from a build directory, read only from the manifest entries that ``rederive``
has just checked byte for byte (so a forged manifest cannot name another file), with every name checked
before it becomes a path.

| build file (manifest role) | player 0 | players 1 and 2 |
| --- | --- | --- |
| the program (``program``), ``io_answers.txt`` (``io_answers``) | yes | yes |
| parameters (``parameter``) | yes | only with ``--weights public`` |
| the sparsity pattern (``sparsity_pattern``) | yes | yes (``--sparsity public`` only) |
| the input image(s) (``input``) | yes | never |
| expected outputs (``expected_output``), ``manifest.json`` | never: for verify only | never |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import VerificationFailed
from ..manifest import Manifest

PARTIES = 3
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
PLAYER_ZERO_ROLES = {"parameter", "sparsity_pattern", "input"}  # never expected_output


def public_roles(manifest: Manifest) -> set[str]:
    """The file roles every player reads as public input: the parameters with --weights public, the
    sparsity pattern with --sparsity public."""
    roles = {"sparsity_pattern"}
    if manifest.fixed_spec.protocol.public_weights:
        roles.add("parameter")
    return roles


@dataclass(frozen=True)
class HandOff:
    """The files of a checked build each party receives; every path relative to the build directory."""

    program_name: str  # an identifier: the program's folder and file name
    program: str  # program/<name>/<name>.mpc
    answers: str  # io_answers.txt
    data_folder: str  # an identifier: the data files' top folder (it becomes Data/<data_folder>/ on a player)
    data_files: tuple[tuple[str, ...], ...]  # per player, the data files it receives



def _single(manifest: Manifest, role: str) -> str:
    paths = [entry.path for entry in manifest.files_of_role(role)]
    if len(paths) != 1:
        raise VerificationFailed(f"manifest.json: {len(paths)} files of role {role!r}; a build has exactly one")
    return paths[0]


def hand_off(manifest: Manifest) -> HandOff:
    """The hand-off of a build whose files rederive() has checked. Refuses (VerificationFailed, one line)
    a program or data folder name that is not an identifier, a program path other than
    program/<name>/<name>.mpc, and a data file outside the data folder."""
    name = manifest.program.name
    if not IDENTIFIER.fullmatch(name):
        raise VerificationFailed(f"manifest.json: program name {name!r} is not an identifier")
    program = _single(manifest, "program")
    if program != f"program/{name}/{name}.mpc" or manifest.program.path != program:
        raise VerificationFailed(f"manifest.json: program path {manifest.program.path!r} is not "
                                 f"program/{name}/{name}.mpc, the build's program file")
    answers = _single(manifest, "io_answers")
    if answers != "io_answers.txt":
        raise VerificationFailed(f"manifest.json: IO answers at {answers!r}, not io_answers.txt")
    folder = manifest.data_folder
    if not IDENTIFIER.fullmatch(folder):
        raise VerificationFailed(f"manifest.json: data folder {folder!r} is not an identifier")
    public = public_roles(manifest)
    per_player: list[list[str]] = [[] for _ in range(PARTIES)]
    for entry in manifest.files:
        role, path = entry.role, entry.path
        if role not in PLAYER_ZERO_ROLES and role != "expected_output":
            continue
        if PurePosixPath(path).parts[0] != folder or ".." in PurePosixPath(path).parts:
            raise VerificationFailed(f"manifest.json: {path!r} lies outside the data folder {folder}/")
        if role in PLAYER_ZERO_ROLES:
            per_player[0].append(path)
            if role in public:
                for player in range(1, PARTIES):
                    per_player[player].append(path)
    return HandOff(name, program, answers, folder, tuple(tuple(files) for files in per_player))
