"""add: residual connection y = a + b (+ ReLU), both at scale 2^F: exact, no truncation.

Fixed point: y = a + b (|v| < 2^(K-1)); relu(y) with one comparison (LTZ on K bits) and one multiplication.
"""

from __future__ import annotations

import numpy as np

from .base import Op
from .protocol import Comparison, Products, Schedule, Stage, SumOfInputs


class Add(Op):
    name = "add"
    executable = True
    template = "add"
    input_layout = "padded"
    output_layouts = ("padded",)

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        from ..errors import UserError

        if len(in_shapes) != 2 or in_shapes[0] != in_shapes[1]:
            raise UserError(f"{node.name}: add needs two inputs of one shape, got {in_shapes}")
        return in_shapes[0]

    @classmethod
    def ref_float(cls, node, a, b):
        y = a + b
        return np.maximum(y, 0.0) if node.attrs.get("relu") else y

    @classmethod
    def ref_fixed(cls, node, fx, trace, a, b):
        y = a + b
        trace.record(node, "sum", y)
        return np.maximum(y, 0) if node.attrs.get("relu") else y

    @classmethod
    def schedule(cls, node, fx):
        """With a ReLU: one comparison and one selection per element of each whole padded plane (the zero
        borders included), one channel per run-time iteration."""
        c, h, w = node.shape
        steps = []
        if node.attrs.get("relu"):
            plane = (h + 2) * (w + 2)
            steps = [Comparison("sum", fx.total_bits, c, plane), Products("ReLU selection", c, plane)]
        return Schedule(steps, stored=[Stage("sum", fx.value_limit_bits)], flow=[SumOfInputs("sum")])

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        return float(sum(in_errors))

    @classmethod
    def template_args(cls, node, fx, layout):
        c, h, w = node.shape
        return {"name": layout.ident(node), "a": layout.buffer(layout.graph.node(node.inputs[0])).name,
                "b": layout.buffer(layout.graph.node(node.inputs[1])).name, "channels": c, "plane": (h + 2) * (w + 2),
                "relu_bits": cls.schedule(node, fx).comparison("sum").bit_length if node.attrs.get("relu") else None, "target": layout.buffer(node).name, "height": h, "width": w}
