"""Integrity of a build directory: every file in manifest.json exists, hashes match, parses under the
runtime's rules with the exact element count; parameter files also equal the model re-quantized."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np

from ..errors import UserError, VerificationFailed
from ..export.tokens import STOI_LIMIT, parse_token
from ..export.writer import sha256_file
from ..manifest import CHECKED_ROLES, FileEntry, Manifest
from ..quantize.graph import quantize_parameters


def read_manifest(directory: Path) -> Manifest:
    """The build directory's manifest.json, typed and shape-checked (``manifest.Manifest.from_dict``)."""
    path = directory / "manifest.json"
    if not path.is_file():
        raise UserError(f"{directory}: no manifest.json (is this a directory written by `mpc-export build`?)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VerificationFailed(f"{path}: not valid JSON: {exc}") from None
    return Manifest.from_dict(data)


# a whole file of runtime tokens (export.tokens.TOKEN), separated by whitespace: one C-speed check
TOKENS_TEXT = re.compile(r"(?:\s*-?[0-9]+(?:\.[0-9]+)?(?=\s|\Z))*\s*")
INT64_SAFE = 2.0**62


def parse_values(text: str, reading_precision: int) -> np.ndarray | None:
    """int64 array of what export.tokens.parse_token stores for each whitespace-separated token of
    ``text``, computed per file rather than per token; None when some token is invalid, an integer token
    is outside stoi's range or a value reaches 2^62 (the per-token path then names the token)."""
    if TOKENS_TEXT.fullmatch(text) is None:
        return None
    tokens = text.split()
    has_point = np.fromiter(("." in token for token in tokens), dtype=bool, count=len(tokens))
    values = np.zeros(len(tokens), dtype=np.int64)
    integers = [int(token) for token, point in zip(tokens, has_point) if not point]
    if integers and not (-STOI_LIMIT <= min(integers) and max(integers) < STOI_LIMIT):
        return None
    values[~has_point] = integers
    scaled = np.fromiter((float(token) for token, point in zip(tokens, has_point) if point), dtype=np.float64,
                         count=int(has_point.sum())) * 2.0**reading_precision
    if scaled.size and float(np.max(np.abs(scaled))) >= INT64_SAFE:
        return None
    values[has_point] = np.copysign(np.floor(np.abs(scaled) + 0.5), scaled)  # C round: half away from zero
    return values


def parse_file(directory: Path, entry: FileEntry, reading_precision: int) -> np.ndarray:
    """The integers the runtime reads from one data file (raises VerificationFailed naming the first bad
    token, or a count other than the manifest's)."""
    text = (directory / entry.path).read_text()
    values = parse_values(text, reading_precision)
    if values is None:
        values = _parse_tokens(text, entry, reading_precision)
    if entry.count is not None and len(values) != entry.count:
        raise VerificationFailed(f"{entry.where}: {len(values)} values, the program reads {entry.count}")
    return values


def _parse_tokens(text: str, entry: FileEntry, reading_precision: int) -> np.ndarray:
    """parse_token on every token of ``text``, naming the first one the runtime would abort on."""
    tokens = text.split()
    values = []
    for index, token in enumerate(tokens):
        try:
            values.append(parse_token(token, reading_precision))
        except ValueError as exc:
            raise VerificationFailed(f"{entry.where}: element {index}: {exc}; the runtime would abort") from None
    return np.array(values, dtype=np.int64)


def check_files(directory: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    """Hash and parse every file; return the parsed integers of data files by path."""
    parsed = {}
    for entry in manifest.files:
        path = directory / entry.path
        if not path.is_file():
            raise VerificationFailed(f"{entry.where}: file is missing")
        digest = sha256_file(path)
        if digest != entry.sha256:
            detail = _first_difference(directory, entry) if entry.role in CHECKED_ROLES else ""
            raise VerificationFailed(f"{entry.where}: SHA-256 differs from the manifest (file changed after build){detail}")
        if entry.role in CHECKED_ROLES:
            parsed[entry.path] = parse_file(directory, entry, entry.reading_precision)
    return parsed


def _first_difference(directory: Path, entry: FileEntry) -> str:
    """For a changed data file, name the first element that differs from what build intended, if known."""
    try:
        values = parse_file(directory, entry, entry.reading_precision)
    except VerificationFailed as exc:
        return f"; {str(exc).split(': ', 1)[-1]}"
    return f"; it now holds {values.size} values" if values.size != entry.count else ""


def attach_parameters(graph, fx, manifest: Manifest, parsed: dict[str, np.ndarray]) -> None:
    """Set node.qparams from the parsed files; fail naming file, channel and index where they differ
    from the model quantized afresh (catches edits even when the manifest was edited too)."""
    fresh = copy.deepcopy(graph)
    quantize_parameters(fresh, fx)
    for entry in manifest.files_of_role("parameter"):
        flat = parsed[entry.path]
        for t in entry.tensors:
            try:
                node = graph.node(t.node)
            except KeyError:
                raise VerificationFailed(f"{entry.where}: tensor {t.tensor} names layer {t.node}, which the model lacks") from None
            want = fresh.node(t.node).qparams[t.param]
            if t.shape != want.shape:
                raise VerificationFailed(f"{entry.where}: {t.tensor} has shape {t.shape}, the model has {want.shape}")
            values = flat[t.offset:t.offset + t.count]
            diff = np.flatnonzero(values != want.ravel())
            if diff.size:
                i = int(diff[0])
                raise VerificationFailed(
                    f"{entry.where}: element {t.offset + i} ({t.tensor}[{i}]) is {values[i]}, the model quantizes "
                    f"to {want.ravel()[i]} ({diff.size} element(s) differ)"
                )
            node.qparams[t.param] = values.reshape(want.shape)
    for node in graph.nodes:
        for param, _ in node.spec.params:
            if param not in node.qparams:
                raise VerificationFailed(f"{node.name}.{param}: no parameter file in the manifest")
