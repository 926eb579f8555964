"""ONNX front end: onnx + shape inference -> graph IR.

Constant subgraphs (the Shape/Gather/Concat/ConstantOfShape chains exporters emit for pads and
reshapes) are evaluated with onnx's reference evaluator. Handlers translate each remaining node into IR
ops; the option-A shortcut (Slice with step 2 on H and W, then Pad on the channel axis) becomes
``subsample`` + ``channel_pad``, which a pass fuses into ``shortcut_a``. BatchNorm may be fused into
Conv by the exporter or not; a batch dimension of 1 (torch.onnx.export's default) or a symbolic one is
accepted; any other symbolic dimension, and every unsupported op, is refused with the node named.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..ir import Graph, Node

IGNORED = {"Dropout", "Identity"}


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Downstream(Exception):
    """A node reads a tensor of a refused node: skipped, since that node's problem is already reported."""


class _Converter:
    def __init__(self, model, source: str):
        import onnx
        from onnx import numpy_helper

        self.onnx = onnx
        self.model = model
        self.source = source
        self.const: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        self.alias: dict[str, str] = {}  # tensor name -> IR node name that produces it
        self.skipped: set[str] = set()  # tensors of nodes refused (reported once, with every other problem)
        self.nodes: list[Node] = []

    def ir(self, tensor: str) -> str:
        if tensor in self.skipped:
            raise _Downstream()
        if tensor not in self.alias:
            raise UserError(f"{self.source}: tensor {tensor!r} is neither a constant nor produced by a supported node")
        return self.alias[tensor]

    def emit(self, onnx_node, op: str, inputs: list[str], attrs=None, params=None) -> None:
        """One IR node for an ONNX node: named by the converter (n<index>), never by the model; the ONNX
        output tensor's name is kept as its origin (the onnxruntime oracle's key)."""
        name = f"n{len(self.nodes)}"
        self.nodes.append(Node(name, op, [self.ir(i) for i in inputs], attrs or {}, params or {}, origin=[onnx_node.output[0]]))
        self.alias[onnx_node.output[0]] = name

    def fold(self, node) -> bool:
        """Evaluate a node whose inputs are all constants; True if it was folded."""
        if node.op_type == "Constant":
            from onnx import numpy_helper

            attrs = _attrs(node)
            if "value" in attrs:
                self.const[node.output[0]] = numpy_helper.to_array(attrs["value"])
                return True
        if all((i == "" or i in self.const) for i in node.input):
            from onnx.reference import ReferenceEvaluator

            feeds = {i: self.const[i] for i in node.input if i}
            try:
                outs = ReferenceEvaluator(node).run(None, feeds)
            except Exception as exc:  # the reference evaluator raises many kinds
                raise UserError(f"{self.source}: cannot fold constant node {node.name or node.op_type} ({node.op_type}): {exc}") from None
            for name, value in zip(node.output, outs):
                self.const[name] = np.asarray(value)
            return True
        return False

    def activation_inputs(self, node) -> list[str]:
        return [i for i in node.input if i and i not in self.const]


def _conv(c: _Converter, node) -> None:
    a = _attrs(node)
    weight = c.const[node.input[1]].astype(np.float64)
    bias = c.const[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else np.zeros(weight.shape[0])
    if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise UserError(f"{c.source}: Conv {node.name}: groups and dilations are not supported")
    pads = a.get("pads", [0, 0, 0, 0])
    strides = a.get("strides", [1, 1])
    if len(set(pads)) != 1 or strides[0] != strides[1] or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UserError(f"{c.source}: Conv {node.name}: only symmetric padding and equal strides are supported")
    c.emit(node, "conv2d", [node.input[0]], {"stride": strides[0], "padding": pads[0]}, {"weight": weight, "bias": bias})


def _batchnorm(c: _Converter, node) -> None:
    a = _attrs(node)
    g, b, m, v = (c.const[n].astype(np.float64) for n in node.input[1:5])
    c.emit(node, "batchnorm", [node.input[0]], {"eps": float(a.get("epsilon", 1e-5))}, {"gamma": g, "beta": b, "mean": m, "var": v})


def _pool(kind):
    def handler(c: _Converter, node) -> None:
        a = _attrs(node)
        k = a.get("kernel_shape", [2, 2])
        s = a.get("strides", k)
        if k[0] != k[1] or s != k or any(a.get("pads", [0, 0, 0, 0])) or a.get("ceil_mode", 0):
            raise UserError(f"{c.source}: {node.op_type} {node.name}: only square windows with stride == kernel, no padding")
        c.emit(node, kind, [node.input[0]], {"kernel": k[0], "stride": k[0]})
    return handler


def _flatten(c: _Converter, node) -> None:
    if node.op_type == "Flatten" and _attrs(node).get("axis", 1) != 1:
        raise UserError(f"{c.source}: Flatten {node.name}: only axis 1 is supported")
    if node.op_type == "Reshape":
        shape = [int(v) for v in c.const[node.input[1]]]
        if _attrs(node).get("allowzero", 0) and 0 in shape:  # a literal zero-sized axis, not "copy this one"
            raise UserError(f"{c.source}: Reshape {node.name}: attribute allowzero = 1 with a 0 in the shape {shape} is not supported")
        if len(shape) != 2 or shape[0] not in (1, -1, 0) and shape[1] != -1:
            raise UserError(f"{c.source}: Reshape {node.name} to {shape}: only flattening to (N, features) is supported")
    c.emit(node, "flatten", [node.input[0]])


def _gemm(c: _Converter, node) -> None:
    a = _attrs(node)
    if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
        raise UserError(f"{c.source}: Gemm {node.name}: only alpha = beta = 1 without transA is supported")
    w = c.const[node.input[1]].astype(np.float64)
    w = w if a.get("transB", 0) else w.T
    b = c.const[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
    c.emit(node, "linear", [node.input[0]], {}, {"weight": w, "bias": np.broadcast_to(b, (w.shape[0],)).copy()})


def _matmul(c: _Converter, node) -> None:
    if node.input[1] not in c.const:
        raise UserError(f"{c.source}: MatMul {node.name}: only a constant weight is supported")
    w = c.const[node.input[1]].astype(np.float64).T
    c.emit(node, "linear", [node.input[0]], {}, {"weight": w, "bias": np.zeros(w.shape[0])})


def _add(c: _Converter, node) -> None:
    acts = c.activation_inputs(node)
    if len(acts) == 2:
        c.emit(node, "add", acts)
        return
    # a constant added to a MatMul's output is its bias
    (act,) = acts
    const = next(c.const[i] for i in node.input if i in c.const)
    producer = next((n for n in c.nodes if n.name == c.alias.get(act)), None)
    if producer is None or producer.op != "linear" or len(c.consumers_of(act)) != 1:
        raise UserError(f"{c.source}: Add {node.name} of a constant is only supported as a MatMul bias")
    producer.params["bias"] = producer.params["bias"] + np.broadcast_to(const.astype(np.float64).ravel(), producer.params["bias"].shape)
    c.alias[node.output[0]] = producer.name


def _slice(c: _Converter, node) -> None:
    data = node.input[0]
    starts, ends = c.const[node.input[1]].tolist(), c.const[node.input[2]].tolist()
    axes = c.const[node.input[3]].tolist() if len(node.input) > 3 and node.input[3] else list(range(len(starts)))
    steps = c.const[node.input[4]].tolist() if len(node.input) > 4 and node.input[4] else [1] * len(starts)
    step = {2: 1, 3: 1}
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = ax + 4 if ax < 0 else ax
        if s != 0 or e < 2**20:  # only whole-axis slices (ends are huge sentinels)
            if not (s == 0 and st > 1 and e >= 2**20):
                raise UserError(f"{c.source}: Slice {node.name}: only x[:, :, ::s, ::s] subsampling is supported")
        if ax in (0, 1) and st != 1:
            raise UserError(f"{c.source}: Slice {node.name}: only spatial axes may be strided")
        if ax in (2, 3):
            step[ax] = st
    c.emit(node, "subsample", [data], {"step_h": step[2], "step_w": step[3]})


def _pad(c: _Converter, node) -> None:
    a = _attrs(node)
    mode = a.get("mode", b"constant")
    pads = [int(v) for v in (c.const[node.input[1]] if len(node.input) > 1 and node.input[1] else a.get("pads", []))]
    value = float(c.const[node.input[2]]) if len(node.input) > 2 and node.input[2] else float(a.get("value", 0.0))
    if mode not in (b"constant", "constant") or value != 0.0 or len(pads) != 8 or any(pads[i] for i in (0, 2, 3, 4, 6, 7)):
        raise UserError(f"{c.source}: Pad {node.name}: only zero padding of the channel axis is supported")
    c.emit(node, "channel_pad", [node.input[0]], {"pad_lo": pads[1], "pad_hi": pads[5]})


def _simple(op):
    def handler(c: _Converter, node) -> None:
        c.emit(node, op, [node.input[0]])
    return handler


def _reduce_mean(c: _Converter, node) -> None:
    a = _attrs(node)
    axes = a.get("axes") or (c.const[node.input[1]].tolist() if len(node.input) > 1 and node.input[1] else None)
    if sorted(int(v) % 4 for v in (axes or [])) != [2, 3]:
        raise UserError(f"{c.source}: ReduceMean {node.name}: only the mean over H and W is supported")
    c.emit(node, "mean_pool", [node.input[0]])


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ones(value) -> bool:
    return all(int(v) == 1 for v in value)


def _zeros(value) -> bool:
    return all(int(v) == 0 for v in value)


# Every attribute (in any opset) of every op the front end accepts, with the values it honours. An
# attribute outside this table, or a value its rule refuses, is refused by name before conversion:
# nothing is silently ignored. (Rules that need several attributes together are in the handlers.)
ANY = None  # honoured whatever its value (read by the handler, or without effect in inference)
ATTRIBUTE_RULES = {
    "Conv": {"auto_pad": lambda v: _text(v) == "NOTSET", "dilations": _ones, "group": lambda v: v == 1,
             "kernel_shape": ANY, "pads": ANY, "strides": ANY},
    "BatchNormalization": {"epsilon": ANY, "momentum": ANY, "training_mode": lambda v: v == 0, "is_test": ANY,
                           "spatial": lambda v: v == 1, "consumed_inputs": ANY},
    "Relu": {"consumed_inputs": ANY},
    "AveragePool": {"auto_pad": lambda v: _text(v) == "NOTSET", "ceil_mode": lambda v: v == 0, "count_include_pad": ANY,
                    "dilations": _ones, "kernel_shape": ANY, "pads": _zeros, "strides": ANY},
    "MaxPool": {"auto_pad": lambda v: _text(v) == "NOTSET", "ceil_mode": lambda v: v == 0, "dilations": _ones,
                "kernel_shape": ANY, "pads": _zeros, "storage_order": ANY, "strides": ANY},
    "GlobalAveragePool": {},
    "ReduceMean": {"axes": ANY, "keepdims": ANY, "noop_with_empty_axes": lambda v: v == 0},
    "Flatten": {"axis": lambda v: v == 1},
    "Reshape": {"allowzero": ANY, "consumed_inputs": ANY, "shape": lambda v: False},  # allowzero: see _flatten
    "Gemm": {"alpha": ANY, "beta": ANY, "transA": ANY, "transB": ANY, "broadcast": ANY},
    "MatMul": {},
    "Add": {"consumed_inputs": ANY, "axis": lambda v: False, "broadcast": lambda v: False},
    "Slice": {"axes": lambda v: False, "ends": lambda v: False, "starts": lambda v: False},
    "Pad": {"mode": lambda v: _text(v) == "constant", "pads": ANY, "paddings": lambda v: False, "value": ANY},
}


def check_attributes(source: str, node) -> list[str]:
    """The attributes of ``node`` this front end does not honour, each named with its value."""
    rules = ATTRIBUTE_RULES.get(node.op_type, {})
    problems = []
    for name, value in _attrs(node).items():
        if name not in rules:
            problems.append(f"{node.op_type} {node.name or node.output[0]!r}: attribute {name} is not supported")
        elif rules[name] is not ANY and not rules[name](value):
            problems.append(f"{node.op_type} {node.name or node.output[0]!r}: attribute {name} = {_text(value)[:40]} is not supported")
    return problems


MAX_INPUT_VALUES = 2**18  # 512 x 512 x 1 or 3 x 256 x 341: far above CIFAR's 3 x 32 x 32; bounds every allocation


HANDLERS = {
    "Conv": _conv, "BatchNormalization": _batchnorm, "Relu": _simple("relu"), "AveragePool": _pool("avgpool"),
    "MaxPool": _pool("maxpool"), "GlobalAveragePool": _simple("mean_pool"), "ReduceMean": _reduce_mean,
    "Flatten": _flatten, "Reshape": _flatten, "Gemm": _gemm, "MatMul": _matmul, "Add": _add, "Slice": _slice, "Pad": _pad,
}


def graph_from_onnx(path: Path) -> Graph:
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...
        raise UserError(f"{path}: not a valid ONNX model: {str(exc).splitlines()[0][:160]}") from None
    c = _Converter(model, path.name)
    c.consumers_of = lambda t: [n for n in model.graph.node if t in n.input]
    inputs = [i for i in model.graph.input if i.name not in c.const]
    if len(inputs) != 1:
        raise UserError(f"{path}: expected one input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != 4 or any(v is None or v <= 0 for v in shape[1:]):
        raise UserError(f"{path}: input {inputs[0].name} has dynamic or non-NCHW shape "
                        f"{[d.dim_param or d.dim_value for d in dims]}; export with a fixed C x H x W")
    if shape[1] * shape[2] * shape[3] > MAX_INPUT_VALUES or shape[1] > 64:
        raise UserError(f"{path}: input {inputs[0].name!r} declares C x H x W = {shape[1]} x {shape[2]} x {shape[3]}; "
                        f"refused (a CIFAR-style input has at most 64 channels and {MAX_INPUT_VALUES:,} values)")
    c.nodes.append(Node("input", "input", []))
    c.alias[inputs[0].name] = "input"
    unsupported = []
    for node in model.graph.node:
        if c.fold(node):
            continue
        if node.op_type in IGNORED:
            c.alias[node.output[0]] = c.ir(node.input[0])
            continue
        handler = HANDLERS.get(node.op_type)
        refused = [f"{node.op_type} ({node.name or node.output[0]!r})"] if handler is None else check_attributes(path.name, node)
        if not refused:
            try:
                handler(c, node)
                continue
            except _Downstream:
                refused = []
        unsupported.extend(refused)
        c.skipped.update(node.output)
    if unsupported:
        raise UserError(f"{path}: {len(unsupported)} unsupported ONNX node(s) or attribute(s): " + "; ".join(unsupported))
    outputs = [o.name for o in model.graph.output]
    if len(outputs) != 1 or c.alias.get(outputs[0]) != c.nodes[-1].name:
        raise UserError(f"{path}: expected one output produced by the last node")
    name = re.sub(r"\W+", "_", path.stem).strip("_").lower() or "onnx_model"
    return Graph(c.nodes, tuple(shape[1:]), name=name, description=f"ONNX model {path.name} (opset {model.opset_import[0].version})")
