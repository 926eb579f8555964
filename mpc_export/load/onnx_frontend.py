"""ONNX front end: onnx + shape inference -> graph IR.

Constant and shape arithmetic (the Shape/Gather/Unsqueeze/Concat/Cast/ConstantOfShape chains exporters
emit for pads and reshapes) is evaluated by onnx's own tools, not by patterns: ``onnx.shape_inference``
gives every tensor's shape for one sample (a symbolic batch dimension is evaluated as 1), and onnx's
reference evaluator runs every node whose inputs are all constants, or that reads only the shape of a
tensor whose shape is static (Shape, Size); the results replace those nodes as initializers, and shape
inference runs again until nothing more folds. Folding is bounded: ``MAX_FOLDED_VALUES`` per constant
(checked on the inferred shape before evaluating), ``MAX_FOLDED_TOTAL`` in all, ``MAX_NODES`` per graph.

Handlers translate each remaining node into IR ops; the option-A shortcut (Slice with step 2 on H and W,
then Pad on the channel axis) becomes ``subsample`` + ``channel_pad``, which a pass fuses into
``shortcut_a``. BatchNorm may be fused into Conv by the exporter or not; a batch dimension of 1
(torch.onnx.export's default) or a symbolic one is accepted; any other symbolic dimension is refused.
Every unsupported node and attribute is reported at once, each with its reason and, where one exists,
its rewrite (``REWRITES``). Model names never become code: IR nodes are named n<index>.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..ir import Graph, Node

IGNORED = {"Dropout", "Identity"}

MAX_INPUT_VALUES = 2**18  # 512 x 512 x 1 or 3 x 256 x 341: far above CIFAR's 3 x 32 x 32; bounds every allocation
MAX_NODES = 20_000  # a ResNet-18 exported unfolded has a few hundred; bounds the passes over the graph
MAX_FOLDED_VALUES = 2**24  # elements of one folded constant (128 MiB in float64): a CIFAR CNN's largest tensor is far below
MAX_FOLDED_TOTAL = 2**26  # elements of all folded constants together (a ResNet-18's weights are 2^23.4)
MAX_FOLD_ROUNDS = 32  # shape inference + folding rounds; exporters' shape chains settle in 2 or 3

# ops never evaluated at load time: their value is random, or they run subgraphs
NEVER_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
                "If", "Loop", "Scan", "SequenceMap"}
# inputs whose values an op never reads, by the ONNX spec: only their shape (Shape, Size) or element
# type (CastLike's target); a tensor with a static shape is fed as a zero-strided stand-in (no allocation)
METADATA_INPUTS = {"Shape": (0,), "Size": (0,), "CastLike": (1,)}

# What to do instead, for ops (key "Op") and attributes (key "Op.attribute") the program cannot execute.
REWRITES = {
    "Sigmoid": "no exact MPC form; use ReLU or a piecewise-linear approximation (e.g. hard sigmoid from ReLUs) and retrain",
    "Tanh": "no exact MPC form; use ReLU or a piecewise-linear approximation (hardtanh from ReLUs) and retrain",
    "Softmax": "no exact MPC form; only a trailing Softmax over the classes (which does not change the argmax) is dropped",
    "LogSoftmax": "no exact MPC form; only a trailing LogSoftmax over the classes (which does not change the argmax) is dropped",
    "LeakyRelu": "not supported; use ReLU (or express it as ReLU(x) - slope * ReLU(-x) and retrain)",
    "PRelu": "not supported; use ReLU",
    "Elu": "no exact MPC form; use ReLU",
    "Selu": "no exact MPC form; use ReLU",
    "Gelu": "no exact MPC form; use ReLU",
    "HardSigmoid": "not supported; use ReLU",
    "HardSwish": "not supported; use ReLU",
    "Softplus": "no exact MPC form; use ReLU",
    "Upsample": "upsampling is not supported (a classifier does not need it); use strided convolutions and pooling",
    "Resize": "resizing is not supported; resize the images before export, not inside the model",
    "ConvTranspose": "transposed convolution is not supported (a classifier does not need it); use Conv",
    "Conv.group": "grouped and depthwise convolutions are not supported; use group = 1",
    "Conv.dilations": "dilated convolutions are not supported; use dilation 1",
    "Conv.auto_pad": "export with explicit padding (e.g. padding = kernel // 2)",
    "Conv.auto_pad.same": "'same' padding is supported where it is symmetric (odd kernels); export with explicit padding",
    "MaxPool.dilations": "a dilated max pool is not supported; use dilation 1",
    "MaxPool.ceil_mode": "use ceil_mode = False on a map the window divides",
    "AveragePool.ceil_mode": "use ceil_mode = False on a map the window divides",
    "BatchNormalization.training_mode": "export the model in eval mode (model.eval())",
    "Dropout": "a Dropout in training mode; export the model in eval mode (model.eval())",
}


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _label(node) -> str:
    """How a problem names a node: its op type and its name (or first output), quoted, never executed."""
    return f"{node.op_type} {node.name or (node.output[0] if node.output else '')!r}"


class _Unsupported(Exception):
    """A node this front end cannot translate; the message names it and says why (collected, not raised)."""

    def __init__(self, node, reason: str):
        super().__init__(f"{_label(node)}: {reason}")


class UnsupportedModel(UserError):
    """Every problem of a model at once: ``problems`` holds one line each; the message joins them."""

    def __init__(self, source: str, problems: list[str]):
        super().__init__(f"{source}: {len(problems)} unsupported ONNX node(s) or attribute(s): " + "; ".join(problems))
        self.problems = problems


class _Downstream(Exception):
    """A node reads a tensor of a refused node: skipped, since that node's problem is already reported."""


# ---- folding: constant and shape arithmetic, evaluated by onnx's shape inference and reference evaluator


def _count_nodes(graph, limit: int) -> int:
    """Nodes of ``graph`` and of its subgraphs (If/Loop bodies), counting stops past ``limit``."""
    import onnx

    count = len(graph.node)
    for node in graph.node:
        for attribute in node.attribute:
            subgraphs = list(attribute.graphs) + ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else [])
            for subgraph in subgraphs:
                count += _count_nodes(subgraph, limit - count)
                if count > limit:
                    return count
    return count


def _static_shapes(model) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, numpy dtype) of every tensor whose shape shape inference fixes completely."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError, ValidationError, ...
        raise UserError(f"not a valid ONNX model: shape inference fails: {str(exc).strip().splitlines()[0][:160]}") from None
    shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        tensor = info.type.tensor_type
        if not info.type.HasField("tensor_type") or not tensor.HasField("shape"):
            continue
        dims = tensor.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type) if tensor.elem_type else np.dtype(np.float32)
            shapes[info.name] = (tuple(int(d.dim_value) for d in dims), dtype)
    return shapes


class _Folder:
    """Folds the constant part of a graph (a copy with its batch dimension fixed) into initializers."""

    def __init__(self, model, source: str):
        from onnx import numpy_helper

        self.model = model
        self.source = source
        self.opsets = {o.domain or "": o.version for o in model.opset_import}
        self.const: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.folded_values = 0  # elements of every constant folding made so far

    def known(self, node, index: int, shapes) -> bool:
        """Input ``index`` is absent, a constant, or only its static shape and type matter."""
        tensor = node.input[index]
        return tensor == "" or tensor in self.const or (index in METADATA_INPUTS.get(node.op_type, ()) and tensor in shapes)

    def foldable(self, node, shapes) -> bool:
        if node.domain not in ("", "ai.onnx") or node.op_type in NEVER_FOLDED:
            return False
        return all(self.known(node, index, shapes) for index in range(len(node.input)))

    def check_size(self, node, name: str, shape: tuple[int, ...]) -> None:
        """Refuse an output of ``shape`` past MAX_FOLDED_VALUES, or one that takes all folded constants
        past MAX_FOLDED_TOTAL."""
        values = int(np.prod(shape, dtype=object))
        if values > MAX_FOLDED_VALUES:
            raise UserError(f"{self.source}: {_label(node)} would make a constant {name!r} of shape {list(shape)}, "
                            f"{values:,} values (limit {MAX_FOLDED_VALUES:,}); refused before evaluating it")
        if self.folded_values + values > MAX_FOLDED_TOTAL:
            raise UserError(f"{self.source}: {_label(node)} would take the constants folded from the graph past "
                            f"{MAX_FOLDED_TOTAL:,} values in all; refused before evaluating it")

    def inputs_of(self, node, shapes) -> dict[str, np.ndarray]:
        """The evaluator's feeds: constants, and for an input read only for its shape or type a
        zero-strided stand-in of that shape and type (no allocation)."""
        feeds = {}
        for tensor in node.input:
            if tensor in self.const:
                feeds[tensor] = self.const[tensor]
            elif tensor:
                shape, dtype = shapes[tensor]
                feeds[tensor] = np.broadcast_to(np.zeros((), dtype), shape)
        return feeds

    def evaluate(self, node, shapes) -> bool:
        """Fold one node whose outputs' shapes are known and within bounds; False to retry next round."""
        from onnx.reference import ReferenceEvaluator

        if any(o not in shapes for o in node.output if o):
            return False
        for output in node.output:
            if output:
                self.check_size(node, output, shapes[output][0])
        try:
            values = ReferenceEvaluator(node, opsets=self.opsets).run(None, self.inputs_of(node, shapes))
        except Exception as exc:  # the reference evaluator raises many kinds
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{self.source}: cannot evaluate the constant node {_label(node)}: {first}") from None
        for output, value in zip(node.output, values):
            value = np.asarray(value)
            self.check_size(node, output, value.shape)
            self.folded_values += value.size
            self.const[output] = value
        return True

    def fold_round(self) -> bool:
        """One shape inference and one pass over the nodes in order; True if any node was folded."""
        shapes = _static_shapes(self.model)
        kept, folded = [], False
        for node in self.model.graph.node:
            if self.foldable(node, shapes) and self.evaluate(node, shapes):
                folded = True
            else:
                kept.append(node)
        if folded:
            self.replace_nodes(kept)
        return folded

    def replace_nodes(self, kept) -> None:
        """The graph keeps ``kept``; every constant they or the graph's outputs read becomes an initializer."""
        from onnx import numpy_helper

        graph = self.model.graph
        read = {i for n in kept for i in n.input} | {o.name for o in graph.output}
        del graph.node[:]
        graph.node.extend(kept)
        del graph.initializer[:]
        graph.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(self.const[n]), n) for n in sorted(read & set(self.const)))
        del graph.value_info[:]


def _with_batch_dimension(model, batch: int):
    """A copy of ``model`` whose input has batch dimension ``batch`` (and no stale value_info)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inputs = [i for i in copy.graph.input if i.name not in {init.name for init in copy.graph.initializer}]
    dim = inputs[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = batch
    del copy.graph.value_info[:]
    return copy


def fold_constants(model, source: str, batch: int = 1):
    """``model`` with its constant and shape arithmetic evaluated (for ``batch`` samples), its Constant
    nodes turned into initializers; and the static shapes of what remains (name -> (shape, dtype))."""
    folder = _Folder(_with_batch_dimension(model, batch), source)
    try:
        for _ in range(MAX_FOLD_ROUNDS):
            if not folder.fold_round():
                break
        return folder.model, _static_shapes(folder.model)
    except UserError as exc:
        message = str(exc)
        raise UserError(message if message.startswith(source) else f"{source}: {message}") from None


# ---- conversion of the remaining nodes


class _Converter:
    def __init__(self, model, source: str, shapes: dict):
        from onnx import numpy_helper

        self.model = model
        self.source = source
        self.shapes = shapes  # static (shape, dtype) per tensor, batch dimension included
        self.const: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        self.alias: dict[str, str] = {}  # tensor name -> IR node name that produces it
        self.skipped: set[str] = set()  # tensors of nodes refused (reported once, with every other problem)
        self.nodes: list[Node] = []
        self.notices: list[str] = []  # exact rewrites the user should know of (a dropped trailing Softmax)
        self.readers: dict[str, int] = {}
        for node in model.graph.node:
            for tensor in node.input:
                self.readers[tensor] = self.readers.get(tensor, 0) + 1

    def ir(self, tensor: str, node) -> str:
        """The IR node that produces ``tensor``, an input of ``node``."""
        if tensor in self.skipped:
            raise _Downstream()
        if tensor not in self.alias:
            raise _Unsupported(node, f"reads tensor {tensor!r}, which is neither a constant nor produced by a supported node")
        return self.alias[tensor]

    def constant(self, node, index: int, what: str) -> np.ndarray:
        """Input ``index`` of ``node``, which must be a constant (after folding)."""
        tensor = node.input[index] if index < len(node.input) else ""
        if tensor in self.skipped:
            raise _Downstream()
        if tensor not in self.const:
            raise _Unsupported(node, f"its {what} (input {index}) is computed from the image at run time; only a constant is supported")
        return self.const[tensor]

    def optional_constant(self, node, index: int, what: str) -> np.ndarray | None:
        present = index < len(node.input) and node.input[index] != ""
        return self.constant(node, index, what) if present else None

    def emit(self, onnx_node, op: str, inputs: list[str], attrs=None, params=None) -> None:
        """One IR node for an ONNX node: named by the converter (n<index>), never by the model; the ONNX
        output tensor's name is kept as its origin (the onnxruntime oracle's key)."""
        name = f"n{len(self.nodes)}"
        self.nodes.append(Node(name, op, [self.ir(i, onnx_node) for i in inputs], attrs or {}, params or {}, origin=[onnx_node.output[0]]))
        self.alias[onnx_node.output[0]] = name

    def activation_inputs(self, node) -> list[str]:
        return [i for i in node.input if i and i not in self.const]


def _conv(c: _Converter, node) -> None:
    a = _attrs(node)
    weight = c.constant(node, 1, "weight").astype(np.float64)
    if weight.ndim != 4:
        raise _Unsupported(node, f"a weight of shape {weight.shape}: only 2-D convolutions (O, C, kH, kW) are supported")
    kernel = list(a.get("kernel_shape", weight.shape[2:]))
    if kernel != list(weight.shape[2:]):
        raise _Unsupported(node, f"kernel_shape {kernel} contradicts its weight's {list(weight.shape[2:])}")
    bias = c.optional_constant(node, 2, "bias")
    if bias is not None and bias.size != weight.shape[0]:
        raise _Unsupported(node, f"a bias of {bias.size} value(s) for {weight.shape[0]} output channels")
    bias = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64).reshape(-1)
    strides = a.get("strides", [1, 1])
    pads = _conv_pads(c, node, _text(a.get("auto_pad", "NOTSET")), a.get("pads", [0, 0, 0, 0]), kernel, strides)
    if len(set(pads)) != 1 or strides[0] != strides[1]:
        raise _Unsupported(node, "only symmetric padding and equal strides are supported")
    c.emit(node, "conv2d", [node.input[0]], {"stride": strides[0], "padding": pads[0]}, {"weight": weight, "bias": bias})


def _conv_pads(c: _Converter, node, auto_pad: str, pads, kernel, strides) -> list[int]:
    """The explicit (top, left, bottom, right) padding: ``pads`` as given, or what auto_pad means for the
    input's static size (SAME_*: output size ceil(in / stride); VALID: none). An asymmetric 'same' (an even
    kernel, or a stride that does not divide) is refused in one line."""
    if auto_pad == "NOTSET":
        return list(pads)
    if auto_pad == "VALID":
        return [0, 0, 0, 0]
    shape = c.shapes.get(node.input[0])
    if shape is None:
        raise _Unsupported(node, "auto_pad SAME needs its input's static size; export with explicit padding")
    totals = []
    for size, k, stride in zip(shape[0][2:], kernel, strides):
        out = -(-size // stride)
        totals.append(max((out - 1) * stride + k - size, 0))
    if any(total % 2 for total in totals):
        raise _Unsupported(node, f"auto_pad {auto_pad} pads {totals} unevenly ({REWRITES['Conv.auto_pad.same']})")
    return [totals[0] // 2, totals[1] // 2, totals[0] // 2, totals[1] // 2]


def _batchnorm(c: _Converter, node) -> None:
    a = _attrs(node)
    g, b, m, v = (c.constant(node, i, what).astype(np.float64) for i, what in enumerate(("scale", "bias", "mean", "variance"), start=1))
    c.emit(node, "batchnorm", [node.input[0]], {"eps": float(a.get("epsilon", 1e-5))}, {"gamma": g, "beta": b, "mean": m, "var": v})


def _pool(kind):
    def handler(c: _Converter, node) -> None:
        a = _attrs(node)
        k = list(a.get("kernel_shape", [2, 2]))
        s = list(a.get("strides", [1, 1]))  # ONNX's default stride is 1 (PyTorch exports its kernel-size default)
        if k[0] != k[1] or s[0] != s[1]:
            raise _Unsupported(node, f"window {k} with strides {s}: only square windows with equal strides are supported")
        c.emit(node, kind, [node.input[0]], {"kernel": k[0], "stride": s[0]})
    return handler


def _flatten(c: _Converter, node) -> None:
    """Flatten(axis 1), or a Reshape whose output, as shape inference fixes it for the folded batch, is
    (batch, values per sample) of its input: each sample flattened in C order."""
    if node.op_type == "Reshape":
        shape = [int(v) for v in c.constant(node, 1, "shape")]
        if _attrs(node).get("allowzero", 0) and 0 in shape:  # a literal zero-sized axis, not "copy this one"
            raise _Unsupported(node, f"attribute allowzero = 1 with a 0 in the shape {shape} is not supported")
        source, target = c.shapes.get(node.input[0]), c.shapes.get(node.output[0])
        if source is None or target is None or target[0] != (source[0][0], int(np.prod(source[0][1:]))):
            raise _Unsupported(node, f"to {shape}: only flattening each sample to (N, features) is supported")
    c.emit(node, "flatten", [node.input[0]])


def _gemm(c: _Converter, node) -> None:
    """Y = alpha A B' + beta C with A the flattened input (transA = 0): a linear layer of weight alpha B'
    (B' = B transposed unless transB) and bias beta C, C of one value per output or one value broadcast."""
    a = _attrs(node)
    if a.get("transA", 0):
        raise _Unsupported(node, "transA = 1 is not supported (the input is one row per sample)")
    w = c.constant(node, 1, "weight").astype(np.float64)
    if w.ndim != 2:
        raise _Unsupported(node, f"a weight of shape {w.shape}: only a matrix is supported")
    w = (w if a.get("transB", 0) else w.T) * float(a.get("alpha", 1.0))
    b = c.optional_constant(node, 2, "bias")
    b = np.zeros(w.shape[0]) if b is None else b.astype(np.float64).reshape(-1) * float(a.get("beta", 1.0))
    if b.size not in (1, w.shape[0]):
        raise _Unsupported(node, f"a bias of {b.size} values for {w.shape[0]} outputs")
    c.emit(node, "linear", [node.input[0]], {}, {"weight": w, "bias": np.broadcast_to(b, (w.shape[0],)).copy()})


def _matmul(c: _Converter, node) -> None:
    w = c.constant(node, 1, "weight").astype(np.float64).T
    c.emit(node, "linear", [node.input[0]], {}, {"weight": w, "bias": np.zeros(w.shape[0])})


def _add(c: _Converter, node) -> None:
    acts = c.activation_inputs(node)
    if len(acts) == 2:
        c.emit(node, "add", acts)
        return
    # a constant added to a MatMul's output is its bias
    if len(acts) != 1:
        raise _Unsupported(node, "an Add of two constants left after folding")
    (act,) = acts
    const = next(c.const[i] for i in node.input if i in c.const)
    producer = next((n for n in c.nodes if n.name == c.alias.get(act)), None)
    if producer is None or producer.op != "linear" or c.readers.get(act, 0) != 1:
        raise _Unsupported(node, "an Add of a constant is only supported as a MatMul bias")
    producer.params["bias"] = producer.params["bias"] + np.broadcast_to(const.astype(np.float64).ravel(), producer.params["bias"].shape)
    producer.origin = producer.origin + [node.output[0]]  # the tensor it now computes
    c.alias[node.output[0]] = producer.name


def _slice(c: _Converter, node) -> None:
    """x[:, :, ::s, ::t]: every sliced axis taken whole (start 0, end at or past its size, as ONNX clamps
    it), strided only on H and W."""
    data = node.input[0]
    starts, ends = c.constant(node, 1, "starts").tolist(), c.constant(node, 2, "ends").tolist()
    axes = c.optional_constant(node, 3, "axes")
    steps = c.optional_constant(node, 4, "steps")
    axes = list(range(len(starts))) if axes is None else axes.tolist()
    steps = [1] * len(starts) if steps is None else steps.tolist()
    sizes = c.shapes[data][0] if data in c.shapes else (2**20,) * 4  # unknown: only the exporters' huge end sentinels
    step = {2: 1, 3: 1}
    for start, end, axis, stride in zip(starts, ends, axes, steps):
        axis = axis % 4
        if start != 0 or end < sizes[axis] or stride < 1:
            raise _Unsupported(node, "only x[:, :, ::s, ::s] subsampling is supported")
        if axis in (0, 1) and stride != 1:
            raise _Unsupported(node, "only spatial axes may be strided")
        if axis in (2, 3):
            step[axis] = stride
    c.emit(node, "subsample", [data], {"step_h": step[2], "step_w": step[3]})


def _pad(c: _Converter, node) -> None:
    a = _attrs(node)
    pads = c.optional_constant(node, 1, "pads")
    pads = [int(v) for v in (a.get("pads", []) if pads is None else pads)]
    value = c.optional_constant(node, 2, "constant value")
    if value is not None and value.size != 1:
        raise _Unsupported(node, f"a constant value of {value.size} elements; the Pad value is one number")
    value = float(a.get("value", 0.0)) if value is None else float(np.asarray(value).reshape(-1)[0])  # a scalar or a 1-element tensor
    if len(node.input) > 3 and node.input[3]:
        raise _Unsupported(node, "the axes input is not supported")
    if value != 0.0 or len(pads) != 8 or any(pads[i] for i in (0, 2, 3, 4, 6, 7)):
        raise _Unsupported(node, f"pads {pads}: only zero padding of the channel axis is supported")
    c.emit(node, "channel_pad", [node.input[0]], {"pad_lo": pads[1], "pad_hi": pads[5]})


def _trailing_softmax(c: _Converter, node) -> None:
    """A Softmax or LogSoftmax over the classes that produces the graph's output: both are increasing in each
    logit, so the argmax is the same without them; dropped, with a notice (the secure run outputs logits)."""
    axis = int(_attrs(node).get("axis", -1))
    shape = c.shapes.get(node.input[0])
    outputs = {o.name for o in c.model.graph.output}
    if node.output[0] not in outputs or c.readers.get(node.output[0], 0) or shape is None or len(shape[0]) != 2 or axis not in (1, -1):
        raise _Unsupported(node, REWRITES[node.op_type])
    c.alias[node.output[0]] = c.ir(node.input[0], node)
    c.notices.append(f"the trailing {node.op_type} was dropped (it does not change the argmax): the secure run outputs "
                     "the logits before it")


def _simple(op):
    def handler(c: _Converter, node) -> None:
        c.emit(node, op, [node.input[0]])
    return handler


def _reduce_mean(c: _Converter, node) -> None:
    a = _attrs(node)
    axes = a.get("axes")
    if axes is None:
        axes = c.optional_constant(node, 1, "axes")
    if sorted(int(v) % 4 for v in ([] if axes is None else axes)) != [2, 3]:
        raise _Unsupported(node, "only the mean over H and W is supported")
    c.emit(node, "mean_pool", [node.input[0]])


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ones(value) -> bool:
    return all(int(v) == 1 for v in value)


def _zeros(value) -> bool:
    return all(int(v) == 0 for v in value)


class Rule:
    """An attribute's accepted values: a test, and the words the support table prints for it."""

    def __init__(self, test, text: str):
        self.test, self.text = test, text

    def __call__(self, value) -> bool:
        return bool(self.test(value))

    def __str__(self) -> str:
        return self.text


def equals(expected) -> Rule:
    return Rule(lambda v: v == expected, f"{expected} only")


NOTSET_ONLY = Rule(lambda v: _text(v) == "NOTSET", "NOTSET only")
ALL_ONES = Rule(_ones, "all 1")
ALL_ZEROS = Rule(_zeros, "all 0")
NEVER = Rule(lambda v: False, "refused: a legacy form")

# Every attribute (in any opset) of every op the front end accepts, with the values it honours. An
# attribute outside this table, or a value its rule refuses, is refused by name before conversion:
# nothing is silently ignored. (Rules that need several attributes together are in the handlers.)
ANY = None  # honoured whatever its value (read by the handler, or without effect in inference)
ATTRIBUTE_RULES = {
    "Conv": {"auto_pad": Rule(lambda v: _text(v) in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"), "NOTSET, SAME_UPPER, SAME_LOWER, VALID"),
             "dilations": ALL_ONES, "group": equals(1),
             "kernel_shape": ANY, "pads": ANY, "strides": ANY},
    "BatchNormalization": {"epsilon": ANY, "momentum": ANY, "training_mode": equals(0), "is_test": ANY,
                           "spatial": equals(1), "consumed_inputs": ANY},
    "Relu": {"consumed_inputs": ANY},
    "AveragePool": {"auto_pad": NOTSET_ONLY, "ceil_mode": equals(0), "count_include_pad": ANY,
                    "dilations": ALL_ONES, "kernel_shape": ANY, "pads": ALL_ZEROS, "strides": ANY},
    "MaxPool": {"auto_pad": NOTSET_ONLY, "ceil_mode": equals(0), "dilations": ALL_ONES,
                "kernel_shape": ANY, "pads": ALL_ZEROS, "storage_order": ANY, "strides": ANY},
    "GlobalAveragePool": {},
    "ReduceMean": {"axes": ANY, "keepdims": ANY, "noop_with_empty_axes": equals(0)},
    "Flatten": {"axis": equals(1)},
    "Reshape": {"allowzero": ANY, "consumed_inputs": ANY, "shape": NEVER},  # allowzero: see _flatten
    "Gemm": {"alpha": ANY, "beta": ANY, "transA": ANY, "transB": ANY, "broadcast": ANY},
    "MatMul": {},
    "Add": {"consumed_inputs": ANY, "axis": NEVER, "broadcast": NEVER},
    "Slice": {"axes": NEVER, "ends": NEVER, "starts": NEVER},
    "Pad": {"mode": Rule(lambda v: _text(v) == "constant", "constant only"), "pads": ANY, "paddings": NEVER, "value": ANY},
    "Softmax": {"axis": ANY},
    "LogSoftmax": {"axis": ANY},
}


def _with_rewrite(problem: str, key: str) -> str:
    rewrite = REWRITES.get(key)
    return f"{problem} ({rewrite})" if rewrite else problem


def check_attributes(node) -> list[str]:
    """The attributes of ``node`` this front end does not honour, each named with its value (and the
    rewrite, where one exists)."""
    rules = ATTRIBUTE_RULES.get(node.op_type, {})
    problems = []
    for name, value in _attrs(node).items():
        if name not in rules:
            problems.append(_with_rewrite(f"{_label(node)}: attribute {name} is not supported", f"{node.op_type}.{name}"))
        elif rules[name] is not ANY and not rules[name](value):
            problems.append(_with_rewrite(f"{_label(node)}: attribute {name} = {_text(value)[:40]} is not supported",
                                          f"{node.op_type}.{name}"))
    return problems


def _unsupported_op(node) -> str:
    """One line for an op without a handler: its rewrite, or the list of ops the front end accepts."""
    reason = REWRITES.get(node.op_type) or f"not supported (the ops accepted: {', '.join(sorted(HANDLERS))})"
    return f"{_label(node)}: {reason}"


def _pass_through(c: _Converter, node) -> None:
    """Identity, and Dropout in inference (its optional training_mode input constant false)."""
    training = c.optional_constant(node, 2, "training_mode") if node.op_type == "Dropout" else None
    if training is not None and bool(np.any(training)):
        raise _Unsupported(node, REWRITES["Dropout"])
    c.alias[node.output[0]] = c.ir(node.input[0], node)


HANDLERS = {
    "Conv": _conv, "BatchNormalization": _batchnorm, "Relu": _simple("relu"), "AveragePool": _pool("avgpool"),
    "MaxPool": _pool("maxpool"), "GlobalAveragePool": _simple("mean_pool"), "ReduceMean": _reduce_mean,
    "Flatten": _flatten, "Reshape": _flatten, "Gemm": _gemm, "MatMul": _matmul, "Add": _add, "Slice": _slice, "Pad": _pad,
    "Softmax": _trailing_softmax, "LogSoftmax": _trailing_softmax,
}


def _input_shape(model, source: str) -> tuple[str, tuple]:
    """The one graph input's name and declared shape (batch, C, H, W); the batch may be symbolic (None)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UserError(f"{source}: expected one input, found {len(inputs)}")
    elem = inputs[0].type.tensor_type.elem_type
    if elem not in (1, 10):  # FLOAT, FLOAT16 (onnxruntime, verify's oracle, has no float64 convolution)
        import onnx

        kind = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else str(elem)
        raise UserError(f"{source}: input {inputs[0].name!r} is {kind}; export the model in float32 (model.float() "
                        "before torch.onnx.export)")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    if len(shape) != 4 or any(v is None or v <= 0 for v in shape[1:]):
        raise UserError(f"{source}: input {inputs[0].name!r} has dynamic or non-NCHW shape "
                        f"{[d.dim_param or d.dim_value for d in dims]}; export with a fixed C x H x W")
    if shape[1] * shape[2] * shape[3] > MAX_INPUT_VALUES or shape[1] > 64:
        raise UserError(f"{source}: input {inputs[0].name!r} declares C x H x W = {shape[1]} x {shape[2]} x {shape[3]}; "
                        f"refused (a CIFAR-style input has at most 64 channels and {MAX_INPUT_VALUES:,} values)")
    return inputs[0].name, shape


def _checked(model, source: str):
    """``model`` validated by onnx's checker and bounded in size, before anything evaluates it."""
    import onnx

    nodes = _count_nodes(model.graph, MAX_NODES)
    if nodes > MAX_NODES:
        raise UserError(f"{source}: a graph of {nodes:,} nodes or more (limit {MAX_NODES:,}); refused")
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as exc:  # onnx raises ValidationError, InferenceError, ...
        raise UserError(f"{source}: not a valid ONNX model: {str(exc).splitlines()[0][:160]}") from None
    return model


def _convert(c: _Converter) -> list[str]:
    """Translate every node; the problems of all the nodes refused (downstream nodes are not repeated)."""
    problems = []
    for node in c.model.graph.node:
        handler = _pass_through if node.op_type in IGNORED else HANDLERS.get(node.op_type)
        refused = [_unsupported_op(node)] if handler is None else check_attributes(node)
        if not refused:
            try:
                handler(c, node)
                continue
            except _Downstream:
                pass
            except _Unsupported as exc:
                refused = [str(exc)]
        problems.extend(refused)
        c.skipped.update(node.output)
    return problems


def graph_from_model(model, source: str) -> Graph:
    """The IR of an ONNX ModelProto; ``source`` names it in messages (never in code). Every problem of
    the nodes is raised at once (``UnsupportedModel``); a problem of the file as a whole, alone."""
    model = _checked(model, source)
    input_name, shape = _input_shape(model, source)
    folded, shapes = fold_constants(model, source, batch=shape[0] or 1)
    c = _Converter(folded, source, shapes)
    c.nodes.append(Node("input", "input", []))
    c.alias[input_name] = "input"
    problems = _convert(c)
    if problems:
        raise UnsupportedModel(source, problems)
    outputs = [o.name for o in folded.graph.output]
    if len(outputs) != 1 or c.alias.get(outputs[0]) != c.nodes[-1].name:
        raise UserError(f"{source}: expected one output produced by the last node")
    stem = Path(source).stem
    name = re.sub(r"\W+", "_", stem).strip("_").lower() or "onnx_model"
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), model.opset_import[0].version)
    graph = Graph(c.nodes, tuple(shape[1:]), name=name, description=f"ONNX model {Path(source).name} (opset {opset})")
    graph.notices = list(c.notices)
    return graph


def graph_from_onnx(path: Path) -> Graph:
    """The IR of an ONNX file (data only: nothing in it runs as code)."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ...
        raise UserError(f"{path}: not a valid ONNX model: {str(exc).splitlines()[0][:160]}") from None
    return graph_from_model(model, str(path))
