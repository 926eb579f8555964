"""Write a deployment directory atomically: everything goes to a temporary sibling, renamed at the end."""

from __future__ import annotations

import hashlib
import json
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


class StagingDir:
    """Context manager: a temporary directory next to ``target``; ``commit`` renames it into place."""

    def __init__(self, target: Path, force: bool):
        self.target = target
        self.force = force
        self.path: Path | None = None

    def __enter__(self) -> "StagingDir":
        if self.target.exists() and not self.force:
            raise UserError(f"output directory {self.target} exists; pass --force to replace it")
        if self.target.exists() and not self.target.is_dir():
            raise UserError(f"output path {self.target} exists and is not a directory")
        parent = self.target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=parent))
        except OSError as exc:
            raise UserError(f"cannot create output directory {self.target}: {exc.strerror}") from None
        return self

    def commit(self) -> None:
        if self.target.exists():
            shutil.rmtree(self.target)
        self.path.rename(self.target)
        self.path = None

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)


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
