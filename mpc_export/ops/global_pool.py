"""Global pooling over the whole H x W map per channel: CHW -> (C, 1, 1), written as a dense vector.

global_avgpool: sum, then floor(sum / (H*W)) by a truncation of log2(H*W) bits when H*W is a power of
two (exact reciprocal); otherwise sum * round(2^F / (H*W)) truncated by F (the reciprocal is rounded).
global_maxpool: a tree of pairwise maxima (one comparison and one multiplication each).
"""

from __future__ import annotations

import math

import numpy as np

from ..fixedpoint import encode
from .base import NonExpanding, Op, Stage, protocol_cost


def _area(node) -> int:
    c, h, w = node.in_shapes[0]
    return h * w


def _power_of_two(n: int) -> bool:
    return n & (n - 1) == 0


def _reciprocal(area: int, frac_bits: int) -> int:
    """round(2^F / area): the rounded reciprocal used when the area is not a power of two."""
    return int(encode(np.array([1.0 / area]), frac_bits)[0])


class _GlobalPool(Op):
    name = "_global_pool_base"  # replaced by subclasses
    input_layout = "padded"
    output_layouts = ("dense",)

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        return (in_shapes[0][0], 1, 1)

    @classmethod
    def template_args(cls, node, fx, layout):
        c, h, w = node.in_shapes[0]
        return {"name": layout.ident(node), "source": layout.buffer_of_input(node).name, "target": layout.buffer(node).name,
                "mode": "avg" if cls.name == "global_avgpool" else "max",
                "channels": c, "plane": (h + 2) * (w + 2), "height": h, "width": w, "row": w + 2, "area": h * w,
                "shift": int(math.log2(h * w)) if _power_of_two(h * w) else None,
                "reciprocal": None if _power_of_two(h * w) else _reciprocal(h * w, fx.frac_bits)}


class GlobalAvgPool(_GlobalPool):
    name = "global_avgpool"
    executable = True
    template = "global_pool"

    @classmethod
    def ref_float(cls, node, x):
        return x.mean(axis=(2, 3), keepdims=True)

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        area = _area(node)
        total = x.sum(axis=(2, 3), keepdims=True)
        trace.record(node, "sum", total)
        if _power_of_two(area):
            return trace.truncate(total, int(math.log2(area)))
        return trace.truncate(total * _reciprocal(area, fx.frac_bits), fx.frac_bits)

    @classmethod
    def stages(cls, node, fx):
        return [Stage("sum", fx.total_bits - 1 + math.ceil(math.log2(_area(node))))]

    @classmethod
    def worst_case(cls, node, fx, in_bound):
        return {"sum": in_bound * _area(node)}, in_bound + 1

    @classmethod
    def error_ulp(cls, node, fx, in_error):
        return in_error + 1

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        step = 2.0 ** -fx.frac_bits
        area = _area(node)
        rounding = 0.0 if _power_of_two(area) else in_peaks[0] * area * step / 2  # reciprocal rounded to 2^-F
        return float(in_errors[0]) + rounding + step

    @classmethod
    def cost(cls, node, fx):
        c, area, k = node.in_shapes[0][0], _area(node), fx.total_bits
        if _power_of_two(area):
            return protocol_cost(0, {(k + int(math.log2(area)), int(math.log2(area))): c}, {})
        return protocol_cost(0, {(2 * k, fx.frac_bits): c}, {})


class GlobalMaxPool(NonExpanding, _GlobalPool):
    name = "global_maxpool"
    executable = True
    template = "global_pool"

    @classmethod
    def ref_float(cls, node, x):
        return x.max(axis=(2, 3), keepdims=True)

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        return x.max(axis=(2, 3), keepdims=True)

    @classmethod
    def cost(cls, node, fx):
        c = node.in_shapes[0][0]
        n = (_area(node) - 1) * c
        return protocol_cost(n, {}, {fx.total_bits: n})
