"""Write a deployment directory atomically: everything goes to a temporary sibling, renamed at the end."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UserError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class StagingDir:
    """Context manager that makes the output directory appear complete or not at all.

    The build is written into a temporary sibling of ``target``; ``commit`` moves it into place. Without
    ``force`` the move fails if anything appeared at ``target`` meanwhile. With ``force`` only a directory
    an earlier build wrote (its manifest.json says tool "mpc-export"), or an empty one, is replaced, never the working
    directory or one of its parents, the home directory, the root, or a directory holding the model or an
    input (``protected``); the swap moves the old build aside, moves the new one in, then deletes the
    old one, so an interruption leaves one complete build (and at worst a hidden ``.<name>.old-*``). A
    lock file beside the target makes a concurrent build to the same directory fail cleanly. Directories
    get the user's umask."""

    def __init__(self, target: Path, force: bool, protected: list[Path] = ()):
        self.target = Path(target)
        self.force = force
        self.protected = [Path(p) for p in protected]
        self.path: Path | None = None
        self._lock = None
        self._lock_path: Path | None = None

    def check(self) -> None:
        target = self.target.resolve()
        if self.target.exists() and not self.target.is_dir():
            raise UserError(f"output path {self.target} exists and is not a directory")
        forbidden = [Path.cwd().resolve(), Path.home().resolve(), Path(target.anchor)]
        if target in forbidden or Path.cwd().resolve().is_relative_to(target):
            raise UserError(f"refusing to use {self.target} as the output directory: it is the working directory, one of "
                            "its parents, the home directory or the root")
        for path in self.protected:
            if path.resolve().is_relative_to(target):
                raise UserError(f"refusing to use {self.target} as the output directory: it holds {path}, an input of this build")
        if self.target.exists():
            if not self.force:
                raise UserError(f"output directory {self.target} exists; pass --force to replace it")
            problem = _not_a_build(self.target) if any(self.target.iterdir()) else None
            if problem:
                raise UserError(f"{self.target} exists and is not a directory an earlier `mpc-export build` wrote, "
                                f"unchanged ({problem}); --force replaces only such a directory, or an empty one")

    def __enter__(self) -> "StagingDir":
        self.check()
        parent = self.target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._lock_path = parent / f".{self.target.name}.mpc-export-lock"
            self._lock = open(self._lock_path, "w")
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                self._lock = None
                raise UserError(f"another mpc-export build is writing {self.target}; nothing written") from None
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=parent))
            self.path.chmod(0o777 & ~_umask())
        except OSError as exc:
            raise UserError(f"cannot create output directory {self.target}: {exc.strerror}") from None
        return self

    def commit(self) -> None:
        """Move the staged build into place (see the class docstring)."""
        for directory in [p for p in self.path.rglob("*") if p.is_dir()]:
            directory.chmod(0o777 & ~_umask())
        if self.target.exists() and not self.force:
            raise UserError(f"{self.target} appeared while building; nothing replaced")
        if not self.target.exists():
            try:
                os.rename(self.path, self.target)  # fails if a non-empty directory appeared meanwhile
            except OSError:
                raise UserError(f"{self.target} appeared while building; nothing replaced") from None
        else:
            self.check()
            old = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-", dir=self.target.parent))
            os.rename(self.target, old / "build")
            os.rename(self.path, self.target)
            shutil.rmtree(old, ignore_errors=True)
        self.path = None

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            try:
                self._lock_path.unlink()
            except OSError:
                pass
            self._lock.close()


# what other commands add to a build directory (run's logs), besides the manifest itself
BUILD_EXTRAS = ("manifest.json", "run-logs")


def _not_a_build(directory: Path) -> str | None:
    """Why ``directory`` is not, exactly, what an earlier build wrote (None: it is): its manifest.json says
    mpc-export wrote it, every file in it is one the manifest lists (or run's logs), and every listed file
    is there with its listed SHA-256. So --force never deletes a file someone put there."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return "no manifest.json from mpc-export"
    if not isinstance(manifest, dict) or manifest.get("tool") != "mpc-export" or not isinstance(manifest.get("files"), list):
        return "its manifest.json is not mpc-export's"
    listed = {}
    for entry in manifest["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not isinstance(entry.get("sha256"), str):
            return "its manifest.json lists a file without path and SHA-256"
        listed[entry["path"]] = entry["sha256"]
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if rel.parts[0] in BUILD_EXTRAS or path.is_dir() and not path.is_symlink():
            continue
        if rel.as_posix() not in listed:
            return f"{rel.as_posix()} is not a file the build wrote"
        if path.is_symlink() or not path.is_file() or sha256_file(path) != listed[rel.as_posix()]:
            return f"{rel.as_posix()} changed since the build"
    missing = [rel for rel in listed if not (directory / rel).is_file()]
    return f"{missing[0]} is missing" if missing else None


def write_text(root: Path, rel: str, text: str, executable: bool = False) -> dict:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return {"path": rel, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_manifest(root: Path, manifest: dict) -> None:
    manifest = dict(manifest, tool="mpc-export", version=__version__)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)
