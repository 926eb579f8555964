"""Front-end dispatch: read a model file safely and hand it to the matching front end."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..ir import Graph
from .state_dict import graph_from_state_dict


def _read_state_dict(path: Path) -> dict:
    import torch

    try:
        obj = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, Exception) as exc:  # torch raises many kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable PyTorch state_dict (corrupt or truncated file?): {first[:160]}") from None
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{path}: expected a non-empty state_dict (a dict of tensors), got {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if not hasattr(value, "detach"):
            raise UserError(f"{path}: entry {key!r} is not a tensor")
        out[str(key)] = value.detach().cpu().double().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    return out


def load_model(path: str | Path) -> Graph:
    """Load a model file into the IR (front ends: .pth/.pt state_dict of a known architecture)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model file not found: {path}")
    if not path.is_file():
        raise UserError(f"model path is not a file: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"model file is empty: {path}")
    state = _read_state_dict(path)
    for key, value in state.items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise UserError(f"{path}: tensor {key!r} contains NaN or Inf")
    graph = graph_from_state_dict(state, path.name)
    graph.infer_shapes()
    return graph
