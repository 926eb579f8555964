"""dense: fully connected layer (weight out x in, bias out), optionally followed by ReLU.

Fixed point (x, w, bias at scale 2^F), declared in ``schedule``:

    acc = sum(w * x) + bias * 2^F      scale 2^2F  (truncation bit length 2K)
    y   = floor(acc / 2^F)             scale 2^F   (|v| < 2^(K-1))
    y   = relu(y)                      when the layer has a ReLU (LTZ on K bits)
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import max_abs, to_exact
from . import _exact as exact
from .base import Op
from .protocol import Comparison, Floor, Hold, Products, Schedule, Stage, Truncation, Weighted


class Dense(Op):
    name = "dense"
    params = (("weight", "out x in"), ("bias", "out"))
    executable = True
    template = "dense"
    input_layout = "any"  # reads a dense vector, or a zero-padded CHW plane through an offset table
    output_layouts = ("dense",)
    debug_print = "vector"

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        return (node.params["weight"].shape[0],)

    @classmethod
    def ref_float(cls, node, x):
        y = x.reshape(x.shape[0], -1) @ node.params["weight"].T + node.params["bias"]
        return np.maximum(y, 0.0) if node.attrs["relu"] else y

    @classmethod
    def macs(cls, node, graph):
        return int(node.params["weight"].size)

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        q = node.qparams
        schedule = cls.schedule(node, fx)
        alignment = 2 ** schedule.alignment("accumulator")
        acc = exact.linear(x.reshape(x.shape[0], -1), q["weight"])
        bound = max_abs(acc) + max_abs(q["bias"]) * alignment
        acc = to_exact(acc, bound) + to_exact(q["bias"], bound)[None, :] * alignment
        trace.record(node, "accumulator", acc)
        y = trace.truncate(acc, schedule.truncation("accumulator"))
        trace.record(node, "truncated", y)
        if node.attrs["relu"]:
            y = np.maximum(y, 0)
        return y.astype(np.int64) if y.dtype == object and max_abs(y) < 2**62 else y

    @classmethod
    def schedule(cls, node, fx):
        """One run-time iteration per input (a vectorised product of a weight column by the broadcast input
        value), then one truncation and the ReLU over all outputs at once."""
        out, fan_in = node.params["weight"].shape
        k = fx.total_bits
        products = [] if fx.protocol.public_weights else [Products("weights", fan_in, out)]  # public: local
        steps = products + [Truncation("accumulator", 2 * k, fx.frac_bits, fx.protocol.exact, 1, out)]
        if node.attrs["relu"]:
            steps += [Comparison("truncated", k, 1, out), Products("ReLU selection", 1, out)]
        flow = [Weighted("accumulator", gain="weight", offset="bias", offset_shift=fx.frac_bits), Floor("accumulator"),
                Hold("truncated")]
        return Schedule(steps, stored=[Stage("truncated", fx.value_limit_bits)], flow=flow)

    @classmethod
    def bound_terms(cls, node, fx):
        """sum |w_q| per output, and |bias_q|."""
        q = node.qparams
        return {"weight": np.sum(np.abs(q["weight"].astype(object)), axis=1), "bias": np.abs(q["bias"].astype(object))}

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        """Quantization step x fan-in, plus the input deviation through sum|w|, plus one floor."""
        (in_error,), (in_peak,) = in_errors, in_peaks
        half, step = 2.0 ** -(fx.frac_bits + 1), 2.0 ** -fx.frac_bits
        w = node.params["weight"]
        sums = np.sum(np.abs(w), axis=1)
        return float(np.max(sums * in_error + w.shape[1] * half * (in_peak + in_error) + half)) + step

    @classmethod
    def template_args(cls, node, fx, layout):
        out, fan_in = node.params["weight"].shape
        schedule = cls.schedule(node, fx)
        source = layout.buffer_of_input(node)
        padded_source = source.layout == "padded"
        return {
            "name": layout.ident(node),
            "source": source.name,
            # the input's C x H x W when it is read from zero-padded planes, feature i = (c * H + y) * W + x
            "padded_source": tuple(node.in_shapes[0]) if padded_source else None,
            "weight": layout.param(node, "weight"),
            "bias": layout.param(node, "bias"),
            "inputs": fan_in,
            "outputs": out,
            "relu": bool(node.attrs["relu"]),
            "truncation": schedule.truncation("accumulator"),
            "relu_bits": schedule.comparison("truncated").bit_length if node.attrs["relu"] else None,
            "target": layout.buffer(node).name,
        }
