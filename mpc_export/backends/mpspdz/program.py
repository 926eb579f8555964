"""The MP-SPDZ program of a build and player 0's input file.

The program is ``templates/library.mpc`` (the kernels, the same text in every program) followed by the
network: one parameter array per tensor, read once from player 0; one activation array per node, in HWC
order; a run-time loop over the executions that reads each input, calls one kernel per node and prints the
logits (``LOGIT <execution> <index> <raw integer>``, what ``verify --mpc-log`` parses). Every name in it is
the tool's own (``L<n>``, ``P<n>_<param>``): nothing from the model becomes code. Every number a kernel
gets comes from the node's declared schedule (``ops/``): so the program computes the same integers as the
fixed-point reference.

Player 0's file (``Player-Data/Input-P0-0``) holds every integer the program reads, in that order: the
parameters node by node (convolution weights as O x K x K x C, what ``conv2ds`` reads; a dense layer fed by
a CHW map has its columns permuted to HWC), then each execution's input in HWC order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources

import numpy as np

from ... import __version__
from .kernels import KERNELS, conv_geometry

ROW = 16  # integers per line of the input file


@dataclass(frozen=True)
class Tensor:
    """One parameter array of the program: its name, its integers in the order it reads them, what it is."""

    name: str
    values: np.ndarray
    doc: str


def direct(fx):
    """The FixedSpec MP-SPDZ's program follows: convolutions as dot products (the reference's integers are
    the same for every convolution algorithm; only the declared bit lengths of FANNG's Winograd differ)."""
    return replace(fx, protocol=replace(fx.protocol, convolution="direct"))


def _chw_to_hwc(values: np.ndarray) -> np.ndarray:
    """(..., C, H, W) -> (..., H, W, C)."""
    return np.moveaxis(values, -3, -1)


def tensors(graph, fx) -> list[Tensor]:
    """The parameter arrays, in the order player 0's file holds them."""
    out = []
    for index, node in enumerate(graph.nodes):
        q = node.qparams
        if node.op == "conv_block":
            weight = np.transpose(q["weight"], (0, 2, 3, 1))  # OIHW -> O, kh, kw, C
            arrays = [("weight", weight, "O x K x K x C"), ("bias", q["bias"], "O"), ("new_gamma", q["new_gamma"], "O"),
                      ("new_beta", q["new_beta"], "O")]
        elif node.op == "dense":
            weight = q["weight"]
            source = graph.node(node.inputs[0]).shape
            if len(source) == 3:  # columns in the producer's CHW order -> the program's HWC order
                c, h, w = source
                weight = weight.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
            arrays = [("weight", weight, "out x in (inputs in HWC order)"), ("bias", q["bias"], "out")]
        else:
            arrays = []
        out += [Tensor(f"P{index}_{param}", np.ascontiguousarray(values).ravel().astype(object), doc)
                for param, values, doc in arrays]
    return out


def _call(graph, fx, index: int, node) -> str:
    """The node's kernel call (``kernels.py``), its arrays named by position in the graph."""
    names = [n.name for n in graph.nodes]
    schedule = node.spec.schedule(node, direct(fx))
    return KERNELS[node.op].call(node, fx, schedule, f"L{index}", [f"L{names.index(i)}" for i in node.inputs], f"P{index}")


def _size(shape) -> int:
    return int(np.prod(shape))


def _scratch_size(graph) -> int:
    """The scratch array: a convolution's output planes (CHW, its pools), a global pool's map."""
    sizes = [1]
    for node in graph.nodes:
        if node.op == "conv_block":
            g = conv_geometry(node)
            sizes.append(g["O"] * g["OH"] * g["OW"])
        elif node.op in ("global_avgpool", "global_maxpool"):
            sizes.append(_size(node.in_shapes[0]))
    return max(sizes)


def render_program(graph, fx, executions: int, compile_line: str) -> str:
    """The whole program text (see the module docstring)."""
    library = resources.files(__package__).joinpath("templates/library.mpc").read_text()
    arrays = tensors(graph, fx)
    lines = [
        f"# MP-SPDZ program written by mpc-export {__version__} (backend mp-spdz); generated, do not edit.",
        f"# {len(graph.nodes)} layers, fixed point F = {fx.frac_bits}, K = {fx.total_bits}, exact truncation.",
        f"# Compile: {compile_line}",
        "# Player 0 provides every integer (Player-Data/Input-P0-0): the parameters, then each execution's input.",
        "",
        library.rstrip("\n"),
        "",
        "",
        "# ---- parameters: player 0's private input, read once",
    ]
    for tensor in arrays:
        lines += [f"{tensor.name} = sint.Array({tensor.values.size})  # {tensor.doc}", f"read_into({tensor.name}, {tensor.values.size})"]
    lines += ["", "# ---- activations (HWC) and scratch"]
    lines += [f"L{i} = sint.Array({_size(node.shape)})  # {node.op}, {' x '.join(str(v) for v in node.shape)} (CHW)"
              for i, node in enumerate(graph.nodes)]
    classes = _size(graph.output.shape)
    lines += [f"SCRATCH = sint.Array({_scratch_size(graph)})", f"LOGITS = cint.Array({classes})", "",
              "# ---- the network, once per execution (player 0 inputs the image)",
              f"@for_range({executions})", "def _(execution):"]
    lines += [f"    {_call(graph, fx, i, node)}" for i, node in enumerate(graph.nodes)]
    out = [n.name for n in graph.nodes].index(graph.output.name)
    lines += [f"    LOGITS.assign(L{out}.get_vector().reveal())",
              f"    @for_range({classes})", "    def _(j):", "        print_ln('LOGIT %s %s %s', execution, j, LOGITS[j])", ""]
    return "\n".join(lines)


def input_text(graph, fx, x_int: np.ndarray) -> str:
    """Player 0's input file: the parameters, then each execution's input (HWC), ``ROW`` integers a line."""
    values = [t.values for t in tensors(graph, fx)] + [_chw_to_hwc(image).ravel() for image in x_int]
    flat = np.concatenate([np.asarray(v, dtype=object) for v in values]) if values else np.array([], dtype=object)
    tokens = [str(int(v)) for v in flat]
    return "".join(" ".join(tokens[i:i + ROW]) + "\n" for i in range(0, len(tokens), ROW))
