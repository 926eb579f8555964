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
from ...ops import Comparison, Truncation
from ...ops._average import power_of_two, reciprocal

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


def _bits(schedule, kind, stage: str) -> int:
    """The declared bit length of the steps of ``kind`` on ``stage`` (a pool declares one per tap, alike)."""
    found = {s.bit_length for s in schedule.steps if isinstance(s, kind) and s.stage == stage}
    if len(found) != 1:
        raise KeyError(f"no single {kind.__name__} bit length declared on stage {stage!r}")
    return found.pop()


def _truncation(schedule, stage: str):
    return next(s for s in schedule.steps if isinstance(s, Truncation) and s.stage == stage)


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
    """The kernel call of one node, every number from its shape, attributes and declared schedule."""
    fxd = direct(fx)
    schedule = node.spec.schedule(node, fxd) if node.spec.executable else None
    me, f = f"L{index}", fx.frac_bits
    ins = [f"L{[n.name for n in graph.nodes].index(name)}" for name in node.inputs]
    a = node.attrs
    if node.op == "input":
        c, h, w = node.shape
        return f"read_into({me}, {c * h * w})"
    if node.op == "conv_block":
        c, h, w = node.in_shapes[0]
        o, _, k, _ = node.params["weight"].shape
        stride, pad = a.get("stride", 1), int(a.get("padding", k // 2))
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        affine = a.get("affine", True)
        trunc = _truncation(schedule, "scaled" if affine else "accumulator")
        return (f"conv_block({ins[0]}, {me}, P{index}_weight, P{index}_bias, P{index}_new_gamma, P{index}_new_beta, "
                f"SCRATCH, C={c}, H={h}, W={w}, O={o}, K={k}, S={stride}, P={pad}, OH={oh}, OW={ow}, F={f}, "
                f"pre_pool={bool(a.get('pre_pool'))}, "
                f"pool_bits={_bits(schedule, Comparison, 'accumulator') if a.get('pre_pool') else 0}, "
                f"affine={bool(affine)}, shift={trunc.shift}, trunc_bits={trunc.bit_length}, "
                f"relu_bits={_bits(schedule, Comparison, 'truncated') if a.get('relu', True) else 0}, "
                f"post_pool={bool(a.get('post_pool'))}, "
                f"post_bits={_truncation(schedule, 'pool_sum').bit_length if a.get('post_pool') else 0})")
    if node.op == "dense":
        out, fan_in = node.params["weight"].shape
        trunc = _truncation(schedule, "accumulator")
        return (f"dense({ins[0]}, {me}, P{index}_weight, P{index}_bias, IN={fan_in}, OUT={out}, F={f}, shift={trunc.shift}, "
                f"trunc_bits={trunc.bit_length}, relu_bits={_bits(schedule, Comparison, 'truncated') if a['relu'] else 0})")
    if node.op in ("maxpool", "avgpool"):
        c, h, w = node.in_shapes[0]
        _, oh, ow = node.shape
        kernel = int(a.get("kernel", 2))
        stride = int(a.get("stride", kernel))
        if node.op == "maxpool":
            return (f"max_pool({ins[0]}, {me}, C={c}, H={h}, W={w}, kernel={kernel}, stride={stride}, OH={oh}, OW={ow}, "
                    f"bits={_bits(schedule, Comparison, 'input')})")
        return (f"avg_pool({ins[0]}, {me}, C={c}, H={h}, W={w}, kernel={kernel}, stride={stride}, OH={oh}, OW={ow}, F={f}, "
                + _average_args(schedule, kernel * kernel, f) + ")")
    if node.op in ("global_avgpool", "global_maxpool"):
        c, h, w = node.in_shapes[0]
        if node.op == "global_maxpool":
            return (f"global_pool({ins[0]}, {me}, SCRATCH, C={c}, positions={h * w}, mode='max', F={f}, area_shift=0, "
                    f"reciprocal=0, bits={_bits(schedule, Comparison, 'input')})")
        return f"global_pool({ins[0]}, {me}, SCRATCH, C={c}, positions={h * w}, mode='avg', F={f}, " + _average_args(schedule, h * w, f) + ")"
    if node.op == "add":
        return f"add({ins[0]}, {ins[1]}, {me}, relu_bits={_bits(schedule, Comparison, 'sum') if a.get('relu') else 0})"
    if node.op == "shortcut_a":
        c, h, w = node.in_shapes[0]
        oc, oh, ow = node.shape
        return (f"shortcut_a({ins[0]}, {me}, C={c}, H={h}, W={w}, stride={a['stride']}, pad_lo={a['pad_lo']}, OC={oc}, "
                f"OH={oh}, OW={ow})")
    raise ValueError(f"op {node.op} has no MP-SPDZ kernel")  # every executable op has one (tests/test_mpspdz.py)


def _average_args(schedule, area: int, f: int) -> str:
    if power_of_two(area):
        trunc = _truncation(schedule, "sum")
        return f"area_shift={trunc.shift}, reciprocal=0, bits={trunc.bit_length}"
    trunc = _truncation(schedule, "sum_times_reciprocal")
    return f"area_shift=0, reciprocal={reciprocal(area, f)}, bits={trunc.bit_length}"


KERNELS = ("input", "conv_block", "dense", "maxpool", "avgpool", "global_avgpool", "global_maxpool", "add", "shortcut_a")


def _size(shape) -> int:
    return int(np.prod(shape))


def _scratch_size(graph) -> int:
    """The scratch array: a convolution's output plane (its pools), a global pool's map."""
    sizes = [1]
    for node in graph.nodes:
        if node.op == "conv_block":
            c, h, w = node.in_shapes[0]
            k = node.params["weight"].shape[2]
            stride, pad = node.attrs.get("stride", 1), int(node.attrs.get("padding", k // 2))
            sizes.append(((h + 2 * pad - k) // stride + 1) * ((w + 2 * pad - k) // stride + 1))
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
