"""Global pooling over the whole H x W map per channel: CHW -> (C, 1, 1), written as a dense vector.

global_avgpool: sum, then floor(sum / (H*W)) by a truncation of log2(H*W) bits when H*W is a power of
two (exact reciprocal); otherwise sum * round(2^F / (H*W)) truncated by F (the reciprocal is rounded).
global_maxpool: a tree of pairwise maxima (one comparison of the difference, on K+1 bits, and one
multiplication each), halving the vector per level.
"""

from __future__ import annotations



from ._average import Averaging, power_of_two, reciprocal
from .base import NonExpanding, Op
from .protocol import Hold, Schedule, Stage, Truncation, pairwise_maxima


def _area(node) -> int:
    c, h, w = node.in_shapes[0]
    return h * w


def tree_levels(n: int) -> list[int]:
    """Pairs compared at each level of the program's tree reduction of n values (``tree_reduce``):
    half of them, an odd one out carried to the next level."""
    levels = []
    while n > 1:
        levels.append(n // 2)
        n = n // 2 + n % 2
    return levels




class _GlobalPool(Op):
    name = "_global_pool_base"  # replaced by subclasses
    input_layout = "padded"

    @classmethod
    def _area(cls, node) -> int:
        return _area(node)
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
                "reciprocal": None if power_of_two(h * w) else reciprocal(h * w, fx.frac_bits)}


class GlobalAvgPool(Averaging, _GlobalPool):
    name = "global_avgpool"
    executable = True
    template = "global_pool"

    @classmethod
    def _outputs(cls, node) -> tuple[int, int]:
        return node.in_shapes[0][0], 1

    @classmethod
    def ref_float(cls, node, x):
        return x.mean(axis=(2, 3), keepdims=True)

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        return cls.average(node, fx, trace, x.sum(axis=(2, 3), keepdims=True))


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
        steps = pairwise_maxima("input", fx.total_bits + 1, c, tree_levels(_area(node)))
        return Schedule(steps, stored=[Stage("input", fx.value_limit_bits)], flow=[Hold("input")])
