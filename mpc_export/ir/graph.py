"""The graph IR every stage after the front ends reads.

A Graph is an ordered (topologically sorted) list of Nodes. Each node names its op kind (a key of
``mpc_export.ops.OPS``), its input node names, its attributes, its float parameters (float64 numpy
arrays in the op's declared layout, e.g. conv weight OIHW) and, once inferred, its output shape for ONE
sample (CHW for feature maps, (N,) for vectors). Quantization adds integer parameters in ``qparams``
(scale 2^frac_bits). Shapes come only from the ops' ``infer_shape``: front ends never compute them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ops import OPS


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    attrs: dict = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    in_shapes: list[tuple[int, ...]] = field(default_factory=list)
    qparams: dict[str, np.ndarray] = field(default_factory=dict)
    # names of the source-model layers this node stands for (e.g. PyTorch module names), in order;
    # the last one is the layer whose output equals this node's output
    origin: list[str] = field(default_factory=list)

    @property
    def spec(self):
        """The op's definition (the vocabulary layer below the IR)."""
        return OPS[self.op]


@dataclass
class Graph:
    nodes: list[Node]
    input_shape: tuple[int, ...]
    name: str = "model"
    description: str = ""
    # preprocessing of pixels in [0, 1] into the model input: (x - mean[c]) / std[c]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    format: str = "state_dict"  # the front end that produced it: state_dict / onnx / torchscript
    notices: list = field(default_factory=list)  # exact rewrites of the model the user should know of, one line each

    def preprocess(self, pixels):
        """pixels (N, C, H, W) or (C, H, W) in [0, 1] -> model input, float64."""
        import numpy as np

        x = np.asarray(pixels, dtype=np.float64)
        if self.mean is None:
            return x
        shape = (-1, 1, 1)
        return (x - np.array(self.mean).reshape(shape)) / np.array(self.std).reshape(shape)

    def input_bound(self) -> float:
        """Largest |model input| for pixels in [0, 1]."""
        import numpy as np

        return float(np.max(np.abs(np.stack([self.preprocess(np.zeros(self.input_shape)), self.preprocess(np.ones(self.input_shape))]))))

    def take_ownership_of_names(self) -> None:
        """Replace the front end's node names (a model's own: untrusted, possibly colliding with the
        names passes create) by n<index>; each node's ``origin`` keeps the model's names."""
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            duplicate = next(name for name in names if names.count(name) > 1)
            raise ValueError(f"two nodes produce a tensor named {duplicate!r}")
        mapping = {n.name: "input" if n.op == "input" else f"n{index}" for index, n in enumerate(self.nodes)}
        for n in self.nodes:
            n.name = mapping[n.name]
            n.inputs = [mapping[i] for i in n.inputs]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def replace(self, old: list[Node], new: Node) -> None:
        """Replace the consecutive chain ``old`` by ``new``; consumers of old[-1] read new."""
        index = self.nodes.index(old[0])
        for n in old:
            self.nodes.remove(n)
        self.nodes.insert(index, new)
        for n in self.nodes:
            n.inputs = [new.name if i == old[-1].name else i for i in n.inputs]

    def infer_shapes(self) -> None:
        shapes: dict[str, tuple[int, ...]] = {}
        for n in self.nodes:
            in_shapes = [shapes[i] for i in n.inputs]
            n.in_shapes = in_shapes
            n.shape = tuple(n.spec.infer_shape(n, in_shapes, self))
            shapes[n.name] = n.shape

    def parameter_count(self) -> int:
        return int(sum(p.size for n in self.nodes for k, p in n.params.items() if k not in ("mean", "var")))

    def macs(self) -> int:
        return int(sum(n.spec.macs(n, self) for n in self.nodes))
