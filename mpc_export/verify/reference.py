"""The reference a build is checked against: the manifest read, its paths checked, its files hashed and
parsed, the model loaded (its code runs only with the caller's trust flags) and lowered, and the
parameters attached from the files (each equal to the model quantized afresh)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError, VerificationFailed
from ..export.writer import sha256_file
from ..fold import lower_for_mpc
from ..load import load_model
from .integrity import attach_parameters, check_files, read_manifest
from .rederive import check_paths


def load_reference(directory: Path, model: Path | None, trust_pickle: bool = False, trust_torchscript: bool = False):
    """(manifest, fx, graph with parameters from the files, parsed files, model path). Whether a model's
    code may run comes from the caller's command line only: the manifest's "format" is not trusted."""
    manifest = read_manifest(directory)
    check_paths(directory, manifest)  # before any manifest path is opened
    parsed = check_files(directory, manifest)
    model_path = Path(model) if model else Path(manifest.model.path)
    if not model_path.is_file():
        raise UserError(f"model {model_path} (from manifest.json) not found; pass --model")
    if sha256_file(model_path) != manifest.model.sha256:
        raise VerificationFailed(f"{model_path}: SHA-256 differs from the model this directory was built from")
    fx = manifest.fixed_spec
    float_graph = load_model(model_path, trust_pickle=trust_pickle, trust_torchscript=trust_torchscript)
    if manifest.mean is not None:
        float_graph.mean, float_graph.std = manifest.mean, manifest.std
    graph, _ = lower_for_mpc(float_graph)
    attach_parameters(graph, fx, manifest, parsed)
    return manifest, fx, graph, parsed, model_path
