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

import math

import numpy as np

from ..errors import UserError
from ._kernels import window_out
from .base import NonExpanding, Op
from .global_pool import _power_of_two, _reciprocal
from .protocol import Comparison, Products, Schedule, Stage, Truncation


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
                "reciprocal": None if maximum or _power_of_two(kernel * kernel) else _reciprocal(kernel * kernel, fx.frac_bits),
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
        steps = []
        for _ in range(kernel * kernel - 1):
            steps += [Comparison("input", fx.total_bits + 1, c, count, operand="difference"),
                      Products("max selection", c, count)]
        return Schedule(steps, stored=[Stage("input", fx.value_limit_bits)])

    @classmethod
    def worst_case(cls, node, fx, in_bound):
        return {"input": in_bound}, in_bound


class AvgPool(_Pool):
    name = "avgpool"

    @classmethod
    def ref_float(cls, node, x):
        kernel, _ = _window(node)
        return sum(_taps(node, x)) / float(kernel * kernel)

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        kernel, _ = _window(node)
        schedule = cls.schedule(node, fx)
        total = sum(_taps(node, x))
        trace.record(node, "sum", total)
        if _power_of_two(kernel * kernel):
            return trace.truncate(total, schedule.truncation("sum"))
        scaled = total * _reciprocal(kernel * kernel, fx.frac_bits)
        trace.record(node, "sum_times_reciprocal", scaled)
        return trace.truncate(scaled, schedule.truncation("sum_times_reciprocal"))

    @classmethod
    def schedule(cls, node, fx):
        """Per channel (one run-time iteration each): the window sums (local), one truncation over the
        channel's output values."""
        c, count = cls._outputs(node)
        kernel, _ = _window(node)
        area, k, exact = kernel * kernel, fx.total_bits, fx.protocol.exact
        if _power_of_two(area):
            shift = int(math.log2(area))
            return Schedule([Truncation("sum", k + shift, shift, exact, c, count)])
        return Schedule([Truncation("sum_times_reciprocal", 2 * k, fx.frac_bits, exact, c, count)],
                        stored=[Stage("sum", k - 1 + math.ceil(math.log2(area)))])

    @classmethod
    def worst_case(cls, node, fx, in_bound):
        kernel, _ = _window(node)
        area = kernel * kernel
        total = in_bound * area
        stages = {"sum": total}
        if not _power_of_two(area):
            stages["sum_times_reciprocal"] = total * _reciprocal(area, fx.frac_bits)
        return stages, in_bound + 1

    @classmethod
    def error_ulp(cls, node, fx, in_error):
        """A deviation d of each input sums to area * d; divided by the area (or times the rounded
        reciprocal and floored by F), at most ceil of that, plus the truncation's own rounding."""
        kernel, _ = _window(node)
        area = kernel * kernel
        (truncation,) = cls.schedule(node, fx).steps
        if _power_of_two(area):
            return in_error + truncation.rounding_ulp
        return -(-(in_error * area * _reciprocal(area, fx.frac_bits)) // 2**fx.frac_bits) + truncation.rounding_ulp

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        kernel, _ = _window(node)
        area = kernel * kernel
        step = 2.0 ** -fx.frac_bits
        rounding = 0.0 if _power_of_two(area) else in_peaks[0] * area * step / 2  # reciprocal rounded to 2^-F
        return float(in_errors[0]) + rounding + step
