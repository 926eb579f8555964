"""Global pooling over the whole H x W map per channel: CHW -> (C, 1, 1), written as a dense vector.

global_avgpool: sum, then floor(sum / (H*W)) by a truncation of log2(H*W) bits when H*W is a power of
two (exact reciprocal); otherwise sum * round(2^F / (H*W)) truncated by F (the reciprocal is rounded).
global_maxpool: a tree of pairwise maxima (one comparison of the difference, on K+1 bits, and one
multiplication each), halving the vector per level.
"""

from __future__ import annotations

import math

import numpy as np

from ..fixedpoint import encode
from .base import NonExpanding, Op
from .protocol import Comparison, Products, Schedule, Stage, Truncation


def _area(node) -> int:
    c, h, w = node.in_shapes[0]
    return h * w


def _power_of_two(n: int) -> bool:
    return n & (n - 1) == 0


def tree_levels(n: int) -> list[int]:
    """Pairs compared at each level of the program's tree reduction of n values (``tree_reduce``):
    half of them, an odd one out carried to the next level."""
    levels = []
    while n > 1:
        levels.append(n // 2)
        n = n // 2 + n % 2
    return levels


def _reciprocal(area: int, frac_bits: int) -> int:
    """round(2^F / area): the rounded reciprocal used when the area is not a power of two."""
    return int(encode(np.array([1.0 / area]), frac_bits)[0])


class _GlobalPool(Op):
    name = "_global_pool_base"  # replaced by subclasses
    input_layout = "padded"
    output_layouts = ("dense",)
    debug_print = "vector"

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        return (in_shapes[0][0], 1, 1)

    @classmethod
    def template_args(cls, node, fx, layout):
        c, h, w = node.in_shapes[0]
        schedule = cls.schedule(node, fx)
        avg = cls.name == "global_avgpool"
        return {"name": layout.ident(node), "source": layout.buffer_of_input(node).name, "target": layout.buffer(node).name,
                "mode": "avg" if avg else "max",
                # the protocol numbers, from the declared schedule
                "truncation": next((s for s in schedule.steps if isinstance(s, Truncation)), None) if avg else None,
                "max_bits": None if avg else schedule.steps[0].bit_length,  # every level compares alike
                "channels": c, "plane": (h + 2) * (w + 2), "height": h, "width": w, "row": w + 2, "area": h * w,
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
        schedule = cls.schedule(node, fx)
        total = x.sum(axis=(2, 3), keepdims=True)
        trace.record(node, "sum", total)
        if _power_of_two(area):
            return trace.truncate(total, schedule.truncation("sum"))
        scaled = total * _reciprocal(area, fx.frac_bits)
        trace.record(node, "sum_times_reciprocal", scaled)
        return trace.truncate(scaled, schedule.truncation("sum_times_reciprocal"))

    @classmethod
    def schedule(cls, node, fx):
        """Per channel (one run-time iteration each): the sum of the map (local), one truncation."""
        c, area, k = node.in_shapes[0][0], _area(node), fx.total_bits
        exact = fx.protocol.exact
        if _power_of_two(area):
            shift = int(math.log2(area))
            return Schedule([Truncation("sum", k + shift, shift, exact, c, 1)])
        return Schedule([Truncation("sum_times_reciprocal", 2 * k, fx.frac_bits, exact, c, 1)],
                        stored=[Stage("sum", k - 1 + math.ceil(math.log2(area)))])

    @classmethod
    def worst_case(cls, node, fx, in_bound):
        total = in_bound * _area(node)
        stages = {"sum": total}
        if not _power_of_two(_area(node)):
            stages["sum_times_reciprocal"] = total * _reciprocal(_area(node), fx.frac_bits)
        return stages, in_bound + 1

    @classmethod
    def error_ulp(cls, node, fx, in_error):
        (truncation,) = cls.schedule(node, fx).steps
        return in_error + truncation.rounding_ulp

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        step = 2.0 ** -fx.frac_bits
        area = _area(node)
        rounding = 0.0 if _power_of_two(area) else in_peaks[0] * area * step / 2  # reciprocal rounded to 2^-F
        return float(in_errors[0]) + rounding + step



class GlobalMaxPool(NonExpanding, _GlobalPool):
    name = "global_maxpool"
    executable = True
    template = "global_pool"

    @classmethod
    def ref_float(cls, node, x):
        return x.max(axis=(2, 3), keepdims=True)

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        trace.record(node, "input", x)
        return x.max(axis=(2, 3), keepdims=True)

    @classmethod
    def schedule(cls, node, fx):
        """Per channel and tree level, one comparison of the differences (K+1 bits: two values inside the
        K-bit budget differ by less than 2^K) and one selection, on the level's pairs."""
        c = node.in_shapes[0][0]
        steps = []
        for pairs in tree_levels(_area(node)):
            steps += [Comparison("input", fx.total_bits + 1, c, pairs, operand="difference"),
                      Products("max selection", c, pairs)]
        return Schedule(steps, stored=[Stage("input", fx.value_limit_bits)])

    @classmethod
    def worst_case(cls, node, fx, in_bound):
        return {"input": in_bound}, in_bound
