"""Every file of a build directory, derived in memory from the lowered, quantized graph and the options:
the one function ``build`` writes from and ``verify`` re-derives with, so that "verified" means the files
are, byte for byte, what the model and the recorded options produce.

A ``Product`` is one file: its path (relative to the build directory; chosen by the tool, never by the
model), its text, and its manifest entry without the hash and size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .plan import InputFile, ParamFile, PatternFile, files_of, output_path
from .tokens import distinct_tokens, join_tokens, parse_token
from ..errors import UserError


@dataclass
class Product:
    path: str
    text: str
    entry: dict = field(default_factory=dict)
    executable: bool = False


def _values_file(path: str, values: np.ndarray, number_format: str, fx, entry: dict) -> Product:
    """A P0 file, proven to parse back under the runtime's rules to the intended integers: the file is
    one token per value joined by single spaces, and each distinct token parses back to its value."""
    distinct, tokens, positions = distinct_tokens(values, number_format, fx.frac_bits, path)
    for value, token in zip(distinct.tolist(), tokens):
        if parse_token(token, fx.reading_precision) != int(value):
            index = int(np.flatnonzero(np.asarray(values).ravel() == value)[0])
            raise UserError(f"{path}: value {index} would be read as a different integer by the runtime (internal error)")
    return Product(path, join_tokens(tokens, positions), {"count": int(positions.size), **entry})


def parameter_products(graph, fx, number_format: str, params: list[ParamFile]) -> list[Product]:
    out = []
    for path, channel, tensors in files_of(params):
        arrays = [graph.node(pf.node).qparams[pf.param] for pf in tensors]
        entry = {"role": "parameter", "channel": channel,
                 "tensors": [{"tensor": pf.tensor, "node": pf.node, "param": pf.param, "shape": list(a.shape),
                              "layout": pf.layout, "offset": pf.offset, "count": int(a.size)} for pf, a in zip(tensors, arrays)]}
        if len(tensors) == 1:
            entry.update({k: entry["tensors"][0][k] for k in ("tensor", "node", "param", "shape", "layout")})
        else:
            entry.update(tensor=f"all_{tensors[0].param}", layout="concatenation of the tensors in layer order")
        out.append(_values_file(path, np.concatenate([a.ravel() for a in arrays]), number_format, fx, entry))
    return out


def pattern_products(fx, pattern: PatternFile | None) -> list[Product]:
    """The public sparsity pattern's file (raw integer tokens, whatever the number format: the program
    reads them as clear integers), or nothing."""
    if pattern is None:
        return []
    entry = {"role": "sparsity_pattern", "channel": pattern.channel, "tensor": "sparsity_pattern", "number_format": "integer",
             "layout": "(o, c, t) per non-zero weight, t = kh * k + kw; layers in order",
             "layers": {name: {"first": first, "count": count} for name, (first, count) in pattern.entries.items()}}
    return [_values_file(pattern.path, pattern.values, "integer", fx, entry)]


def input_products(fx, number_format: str, inputs: list[InputFile], x_int: np.ndarray, sources: list[str]) -> list[Product]:
    return [_values_file(inp.path, image, number_format, fx,
                         {"role": "input", "channel": inp.channel, "tensor": "input", "execution": inp.execution,
                          "shape": list(image.shape), "layout": "CHW", "source": sources[inp.execution]})
            for inp, image in zip(inputs, x_int)]


def output_products(graph, fx, number_format: str, inputs: list[InputFile], outputs: dict) -> list[Product]:
    out = []
    for inp in inputs:
        for node in graph.nodes[1:]:
            values = outputs[node.name][inp.execution]
            out.append(_values_file(output_path(graph, inp.execution, node.name), values, number_format, fx,
                                    {"role": "expected_output", "tensor": node.name, "execution": inp.execution,
                                     "shape": list(values.shape), "layout": "CHW" if values.ndim == 3 else "vector"}))
    return out


def data_products(graph, fx, number_format: str, params: list[ParamFile], inputs: list[InputFile], x_int: np.ndarray,
                  outputs: dict, sources: list[str], pattern: PatternFile | None = None) -> list[Product]:
    """The files every backend's build holds, in the manifest's order: player 0's parameters and inputs
    (one file per channel, in the number format), the public sparsity pattern, the expected outputs."""
    return (parameter_products(graph, fx, number_format, params) + pattern_products(fx, pattern)
            + input_products(fx, number_format, inputs, x_int, sources) + output_products(graph, fx, number_format, inputs, outputs))
