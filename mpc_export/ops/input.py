"""input: the model input, one sample CHW in real units, after preprocessing ((pixel - mean) / std).

Fixed point: each value is encoded as round(x * 2^F) (scale 2^F) by the build and read from its channel;
the program copies it into zero-padded planes.
"""

from __future__ import annotations


from .base import Op
from .protocol import Hold, Schedule, Stage


class Input(Op):
    name = "input"
    executable = True
    template = "input"
    output_layouts = ("padded",)  # the snippet copies the channel's dense CHW rows into zero-padded planes

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        return tuple(graph.input_shape)

    @classmethod
    def ref_float(cls, node, x):
        return x

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        trace.record(node, "value", x)
        return x

    @classmethod
    def schedule(cls, node, fx):
        """No protocol step: the values are read from their channel and stored."""
        return Schedule([], stored=[Stage("value", fx.value_limit_bits)], flow=[Hold("value")])

    @classmethod
    def error_ulp(cls, node, fx, *in_errors):
        """The input is encoded once by the build: the program and the reference read the same integers."""
        return 0

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        """Encoding rounds to the nearest multiple of 2^-F."""
        return 2.0 ** -(fx.frac_bits + 1)

    @classmethod
    def template_args(cls, node, fx, layout):
        c, h, w = node.shape
        return {"channels": c, "height": h, "width": w, "source": layout.staging(node), "target": layout.buffer(node).name}
