"""add: residual connection y = a + b (+ ReLU), both at scale 2^F: exact, no truncation.

Fixed point: y = a + b (|v| < 2^(K-1)); relu(y) with one comparison and one multiplication.
"""

from __future__ import annotations

import numpy as np

from .base import Op, Stage, protocol_cost


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
    def stages(cls, node, fx):
        return [Stage("sum", fx.total_bits - 1)]

    @classmethod
    def worst_case(cls, node, fx, a, b):
        return {"sum": a + b}, a + b

    @classmethod
    def error_ulp(cls, node, fx, a, b):
        return a + b

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        return float(sum(in_errors))

    @classmethod
    def cost(cls, node, fx):
        c, h, w = node.shape
        n = c * (h + 2) * (w + 2) if node.attrs.get("relu") else 0  # the program works on whole padded planes
        return protocol_cost(n, {}, {fx.total_bits: n})

    @classmethod
    def template_args(cls, node, fx, layout):
        c, h, w = node.shape
        return {"name": layout.ident(node), "a": layout.buffer(layout.graph.node(node.inputs[0])).name,
                "b": layout.buffer(layout.graph.node(node.inputs[1])).name, "channels": c, "plane": (h + 2) * (w + 2),
                "relu": bool(node.attrs.get("relu")), "target": layout.buffer(node).name, "height": h, "width": w}
