"""Front-end dispatch: read a model file safely and hand it to the matching front end."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..ir import Graph
from .state_dict import ONNX_EXPORT_LINE, graph_from_state_dict

MAX_MODEL_BYTES = 2**30  # a CIFAR-10 ResNet-18 is 45 MB; bounds what a model file (or its unpacked zip) makes us read


def check_model_size(path: Path, what: str = "model file") -> None:
    """Refuse a file, or a zip whose entries unpack to, more than MAX_MODEL_BYTES, before anything reads
    it: a tiny compressed archive (a torch zip, a TorchScript file) must not make the tool allocate GBs."""
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise UserError(f"{path}: a {what} of {size:,} bytes, more than a CIFAR-10 CNN needs ({MAX_MODEL_BYTES:,}); refused")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                unpacked = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"{path}: not a readable zip archive: {exc}") from None
        if unpacked > MAX_MODEL_BYTES:
            raise UserError(f"{path}: its archive unpacks to {unpacked:,} bytes, more than a CIFAR-10 CNN needs "
                            f"({MAX_MODEL_BYTES:,}); refused before unpacking")


def _read_state_dict(path: Path, trust_pickle: bool = False):
    """The state_dict as float64 numpy arrays; with trust_pickle a pickled nn.Module is returned as is."""
    import torch

    try:
        obj = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            if not trust_pickle:
                raise UserError(f"{path}: holds pickled Python objects (a whole nn.Module saved with torch.save(model)?); "
                                "pass --trust-pickle if you trust its source (unpickling runs its code, and the module that "
                                "defines its class must be importable: run from its directory or set PYTHONPATH), or "
                                f"export it to ONNX: {ONNX_EXPORT_LINE}") from None
            try:
                module = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=False)
            except Exception as exc2:  # noqa: BLE001
                missing = isinstance(exc2, (ModuleNotFoundError, AttributeError)) or "Can't get attribute" in str(exc2)
                hint = ("; the module that defines the model's class must be importable: run from its directory or set "
                        "PYTHONPATH to it" if missing else "")
                raise UserError(f"{path}: cannot unpickle the module: {str(exc2).splitlines()[0][:160]}{hint}") from None
            if isinstance(module, torch.nn.Module):
                return module
            obj = module
        else:
            raise UserError(f"{path}: not a readable PyTorch state_dict (corrupt or truncated file?): {first[:160]}") from None
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{path}: expected a non-empty state_dict (a dict of tensors), got {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if not hasattr(value, "detach"):
            raise UserError(f"{path}: entry {key!r} is not a tensor")
        kind = _unreadable_kind(value)
        if kind:
            raise UserError(f"{path}: entry {str(key)[:80]!r} is a {kind} tensor; save the float model's plain state_dict "
                            "(dense real tensors, as model.state_dict() gives before any quantization or conversion)")
        out[str(key)] = value.detach().cpu().double().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    return out


def _unreadable_kind(tensor) -> str | None:
    """What keeps a tensor from being read as plain numbers (None: a dense real tensor with data)."""
    import torch

    if tensor.is_meta:
        return "meta (no data)"
    if tensor.layout != torch.strided:
        return f"{str(tensor.layout).replace('torch.', '')} (not dense)"
    if tensor.is_quantized:
        return "quantized"
    if tensor.is_complex():
        return "complex"
    return None


def model_format(path: Path) -> str:
    """"onnx", "torchscript" or "state_dict" (a torch zip without TorchScript code, or legacy pickle)."""
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any("/code/" in n or n.startswith("code/") for n in zf.namelist()):
                return "torchscript"
    return "state_dict"


def _module_to_onnx_graph(module, path: Path, shape=(1, 3, 32, 32)) -> Graph:
    """A TorchScript or pickled nn.Module goes through the TorchScript ONNX exporter (eval mode)."""
    import tempfile
    import warnings

    import torch

    from .onnx_frontend import graph_from_onnx

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / (path.stem + ".onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module.eval(), torch.zeros(shape), str(target), dynamo=False)
        except Exception as exc:  # the exporter raises many kinds
            raise UserError(f"{path}: cannot trace the module to ONNX: {str(exc).splitlines()[0][:160]}") from None
        check_model_size(target, "traced module")
        graph = graph_from_onnx(target)
    graph.description = f"{path.name} (module, via ONNX)"
    return graph


def load_model(path: str | Path, trust_pickle: bool = False, trust_torchscript: bool = False) -> Graph:
    """Load a model file into the IR. Front ends: a .pth/.pt state_dict of a known architecture (read
    with ``weights_only``: no code runs), an ONNX file (data only), and, only when the command line says
    so, a TorchScript file (``trust_torchscript``: loading and tracing it runs its TorchScript code) or a
    fully pickled nn.Module (``trust_pickle``: unpickling runs arbitrary Python). Trust never comes from
    a file (a manifest, the model itself): callers pass the user's flags."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model file not found: {path}")
    if not path.is_file():
        raise UserError(f"model path is not a file: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"model file is empty: {path}")
    check_model_size(path)
    kind = model_format(path)
    if kind == "onnx":
        from .onnx_frontend import graph_from_onnx

        graph = graph_from_onnx(path)
    elif kind == "torchscript":
        import torch

        if not trust_torchscript:
            raise UserError(f"{path}: a TorchScript file: loading it runs its code (its forward is TorchScript); "
                            "pass --trust-torchscript if you trust it, or export it to ONNX")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # torch raises many kinds
            raise UserError(f"{path}: not a readable TorchScript file: {str(exc).splitlines()[0][:160]}") from None
        graph = _module_to_onnx_graph(module, path)
    else:
        state = _read_state_dict(path, trust_pickle)
        if not isinstance(state, dict):  # a pickled module, loaded because the user trusts it
            graph = _module_to_onnx_graph(state, path)
            kind = "pickle"
        else:
            for key, value in state.items():
                if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                    raise UserError(f"{path}: tensor {key!r} contains NaN or Inf")
            graph = graph_from_state_dict(state, path.name)
    graph.format = kind
    try:
        graph.take_ownership_of_names()
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    for node in graph.nodes:
        for key, value in node.params.items():
            if not np.all(np.isfinite(value)):
                raise UserError(f"{path}: {node.name}.{key} contains NaN or Inf")
    graph.infer_shapes()
    return graph


def check_model(path: str | Path, trust_pickle: bool = False, trust_torchscript: bool = False) -> list[str]:
    """Every problem that keeps the model file at ``path`` from loading, one line each; an empty list when
    it loads. An ONNX model's (or a traced module's) unsupported nodes and attributes come one line per
    node, each with its reason and rewrite (e.g. "Sigmoid '/Sigmoid': no exact MPC form; ..."); a problem
    of the file as a whole (unreadable, unknown architecture, a bad pruning mask) is one line naming the
    file. Raises nothing for a bad model: the trust flags mean what they mean for ``load_model``."""
    try:
        load_model(path, trust_pickle=trust_pickle, trust_torchscript=trust_torchscript)
    except UserError as exc:
        return list(getattr(exc, "problems", None) or [str(exc)])  # onnx_frontend.UnsupportedModel lists them
    return []
