"""maxpool / avgpool: k x k windows with stride s and no padding, anywhere in the network (after a
ReLU, a BatchNorm, a residual add): CHW -> (C, Ho, Wo), Ho = floor((H - k) / s) + 1.

A pool right after a convolution's accumulator (2x2 max) or after its ReLU (2x2 average) is fused into
the conv_block instead; a window covering the whole map becomes a global pool. What is left is this op.

Fixed point (x at scale 2^F, |x| < 2^(K-1)), declared in ``schedule``:

    maxpool:  y = max over the window: k*k - 1 pairwise maxima, each one comparison of the difference
              (K+1 bits: two values inside the budget differ by less than 2^K) and one selection
    avgpool:  sum = sum over the window                          (|v| < 2^(K-1) * k^2)
              y   = floor(sum / k^2)  when k^2 is a power of two (truncation of log2(k^2) bits, exact)
              y   = floor(sum * round(2^F / k^2) / 2^F)  otherwise (the reciprocal rounded to 2^-F)

Activations are read from zero-padded planes of (H+2) x (W+2) through address tables (one per window
tap), one channel per run-time iteration.
"""

from __future__ import annotations


import numpy as np

from ..errors import UserError
from ._kernels import window_out
from .base import NonExpanding, Op
from ._average import Averaging, power_of_two, reciprocal
from .protocol import Hold, Schedule, Stage, Truncation, pairwise_maxima


def _window(node) -> tuple[int, int]:
    kernel = int(node.attrs.get("kernel", 2))
    return kernel, int(node.attrs.get("stride", kernel))


def _taps(node, x: np.ndarray):
    """The k*k strided views of x (N, C, H, W), one per window position (dy, dx), each (N, C, Ho, Wo)."""
    kernel, stride = _window(node)
    _, ho, wo = node.shape
    return [x[:, :, dy: dy + stride * (ho - 1) + 1: stride, dx: dx + stride * (wo - 1) + 1: stride]
            for dy in range(kernel) for dx in range(kernel)]


class _Pool(Op):
    name = "_pool_base"
    executable = True
    template = "pool"
    input_layout = "padded"
    output_layouts = ("padded", "dense")

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        c, h, w = in_shapes[0]
        kernel, stride = _window(node)
        if node.attrs.get("padding", 0):
            raise UserError(f"{node.name}: pooling with padding is not supported (pad the input with a convolution's "
                            "zero padding instead)")
        if kernel < 1 or stride < 1 or kernel > min(h, w):
            raise UserError(f"{node.name}: a {kernel}x{kernel} pool with stride {stride} does not fit a {h}x{w} map")
        return (c, window_out(h, kernel, stride, 0), window_out(w, kernel, stride, 0))

    @classmethod
    def _outputs(cls, node) -> tuple[int, int]:
        """(channels, output values per channel)."""
        c, ho, wo = node.shape
        return c, ho * wo

    @classmethod
    def template_args(cls, node, fx, layout):
        """Sizes, one address table per window tap (rows x columns entries base + row_step*y*source_row +
        column_step*x, the template's offset_table) and the schedule's protocol numbers."""
        c, h, w = node.in_shapes[0]
        _, ho, wo = node.shape
        kernel, stride = _window(node)
        row = w + 2
        target = layout.buffer(node)
        padded = target.layout == "padded"
        schedule = cls.schedule(node, fx)
        maximum = cls.name == "maxpool"
        tables = {"tap": [(ho, wo, stride, stride, (1 + dy) * row + (1 + dx), row)
                          for dy in range(kernel) for dx in range(kernel)]}
        if padded:
            tables["store"] = [(ho, wo, 1, 1, wo + 3, wo + 2)]
        truncation = None if maximum else next(s for s in schedule.steps if isinstance(s, Truncation))
        return {"name": layout.ident(node), "source": layout.buffer_of_input(node).name, "target": target.name,
                "mode": "max" if maximum else "avg", "kernel": kernel, "stride": stride,
                "channels": c, "height": h, "width": w, "in_plane": (h + 2) * row, "count": ho * wo,
                "out_height": ho, "out_width": wo, "tables": tables, "padded": padded,
                # the protocol numbers, from the declared schedule
                "max_bits": schedule.steps[0].bit_length if maximum and schedule.steps else None,
                "truncation": truncation,
                "reciprocal": None if maximum or power_of_two(kernel * kernel) else reciprocal(kernel * kernel, fx.frac_bits),
                "target_offset": wo + 3 if padded else 0,
                "target_channel_stride": (ho + 2) * (wo + 2) if padded else ho * wo,
                "target_row_stride": wo + 2 if padded else wo}


class MaxPool(NonExpanding, _Pool):
    name = "maxpool"

    @classmethod
    def ref_float(cls, node, x):
        return np.maximum.reduce(_taps(node, x))

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        trace.record(node, "input", x)
        return np.maximum.reduce(_taps(node, x))

    @classmethod
    def schedule(cls, node, fx):
        """Per channel (one run-time iteration each), per window tap after the first: one comparison of
        the differences on K+1 bits and one selection, over the channel's output values."""
        c, count = cls._outputs(node)
        kernel, _ = _window(node)
        steps = pairwise_maxima("input", fx.total_bits + 1, c, [count] * (kernel * kernel - 1))
        return Schedule(steps, stored=[Stage("input", fx.value_limit_bits)], flow=[Hold("input")])


class AvgPool(Averaging, _Pool):
    name = "avgpool"

    @classmethod
    def _area(cls, node) -> int:
        kernel, _ = _window(node)
        return kernel * kernel

    @classmethod
    def ref_float(cls, node, x):
        return sum(_taps(node, x)) / float(cls._area(node))

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        return cls.average(node, fx, trace, sum(_taps(node, x)))
