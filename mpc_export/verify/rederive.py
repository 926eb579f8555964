"""verify re-derives: from the model and the options manifest.json records, every file build would write
(parameters, inputs as given, expected outputs, the program, the IO answers) is produced again in memory
and compared byte for byte with the directory. The manifest's SHA-256 values are a convenience, not the
authority. Manifest paths must be relative, inside the directory and not symlinks; a file the build did
not write is reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..export.products import data_products
from ..manifest import Manifest
from ..errors import VerificationFailed
from ..export.channels import channel_map_from_manifest
from ..export.plan import input_file, parameter_files, pattern_file
from ..reference.run import run_fixed

# what other commands add to a build directory
TOOL_EXTRAS = ("manifest.json", "run-logs/")


def check_paths(directory: Path, manifest: Manifest) -> None:
    """Every manifest path relative, inside the directory, through no symlink."""
    root = directory.resolve()
    for entry in manifest.files:
        rel = entry.path
        if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise VerificationFailed(f"manifest.json: file path {rel!r} is not a relative path inside the directory")
        current = directory
        for part in Path(rel).parts:
            current = current / part
            if current.is_symlink():
                raise VerificationFailed(f"{rel}: {current.relative_to(directory)} is a symbolic link")
        if not (directory / rel).resolve().is_relative_to(root):
            raise VerificationFailed(f"{rel}: resolves outside {directory}")


def _first_difference(written: bytes, derived: bytes) -> str:
    for line_number, (a, b) in enumerate(zip(written.splitlines(), derived.splitlines()), start=1):
        if a != b:
            tokens_a, tokens_b = a.split(), b.split()
            for index, (x, y) in enumerate(zip(tokens_a, tokens_b)):
                if x != y:
                    return f"line {line_number}, token {index}: {x[:40]!r} where the model gives {y[:40]!r}"
            return f"line {line_number}: {a[:60]!r} where the model gives {b[:60]!r}"
    return f"{len(written)} bytes where the model gives {len(derived)}"


def rederive(directory: Path, manifest: Manifest, graph, fx, parsed: dict, backend) -> list[str]:
    """Compare every file with what the model (``graph``: lowered, parameters attached), the recorded
    options and the build's ``backend`` (``backends.backend_of(manifest)``: its program files) produce;
    return the checks made (one line each). Raises VerificationFailed at the first file that differs, is
    missing or is not the build's."""
    check_paths(directory, manifest)
    cmap = channel_map_from_manifest(manifest.channel_map)
    params = parameter_files(graph, cmap)
    pattern = pattern_file(graph, fx, cmap, params)
    executions = sorted(manifest.executions, key=lambda e: e.index)
    if [e.index for e in executions] != list(range(len(executions))):
        raise VerificationFailed("manifest.json: executions must be numbered 0, 1, ...")
    inputs = [input_file(graph, cmap, e.index) for e in executions]
    listed_entries = {f.path: f for f in manifest.files}
    x_int = np.stack([input_values(parsed, i.path, graph.input_shape) for i in inputs])
    outputs = run_fixed(graph, fx, x_int)
    sources = [e.source for e in executions]
    debug = manifest.program.debug
    products = (data_products(graph, fx, manifest.number_format, params, inputs, x_int, outputs, sources, pattern)
                + backend.program_products(graph, fx, params, inputs, x_int, debug, pattern))
    derived = {p.path: p for p in products}
    if set(listed_entries) != set(derived):
        extra, missing = sorted(set(listed_entries) - set(derived)), sorted(set(derived) - set(listed_entries))
        raise VerificationFailed(f"manifest.json lists files the model and options do not produce ({', '.join(extra[:3])})"
                                 if extra else f"manifest.json omits {', '.join(missing[:3])}, which build writes")
    for path, product in derived.items():
        entry = listed_entries[path]
        for key in ("role", "channel", "count", "execution"):
            if key in product.entry and getattr(entry, key) != product.entry[key]:
                raise VerificationFailed(f"{path}: manifest says {key} {getattr(entry, key)!r}, the build gives {product.entry[key]!r}")
        written = (directory / path).read_bytes()
        if written != product.text.encode():
            raise VerificationFailed(f"{path}: differs from what the model and the recorded options produce "
                                     f"({_first_difference(written, product.text.encode())})")
    unlisted = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                      if (p.is_file() or p.is_symlink()) and p.relative_to(directory).as_posix() not in derived
                      and not any(p.relative_to(directory).as_posix().startswith(x) for x in TOOL_EXTRAS))
    if unlisted:
        raise VerificationFailed(f"{unlisted[0]}: not a file build writes" + (f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""))
    roles = {}
    for product in products:
        roles[product.entry["role"]] = roles.get(product.entry["role"], 0) + 1
    return [f"{len(products)} files re-derived from the model and the recorded options, byte for byte equal "
            f"({', '.join(f'{n} {role}' for role, n in roles.items())}); no unlisted file; every path inside the directory"]


def input_values(parsed: dict, path: str, shape) -> np.ndarray:
    """An input file's integers as one CHW sample; a file of another size is refused, naming it."""
    if path not in parsed:
        raise VerificationFailed(f"{path}: input file missing from the manifest")
    values = parsed[path]
    if values.size != int(np.prod(shape)):
        raise VerificationFailed(f"{path}: {values.size} values, the model's input holds {int(np.prod(shape))} (C x H x W = "
                                 f"{' x '.join(str(v) for v in shape)})")
    return values.reshape(shape)
