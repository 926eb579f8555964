"""The fixed-point average shared by every averaging op (a k x k window, a whole map): a local sum of
``area`` values, then

    y = floor(sum / area)                           when area is a power of two (a truncation by log2(area))
    y = floor(sum * round(2^F / area) / 2^F)        otherwise (the reciprocal rounded to 2^-F)

An op mixes in ``Averaging`` and says what it averages: ``_area(node)`` (values per output) and
``_outputs(node)`` ((channels, output values per channel): one run-time iteration per channel).
"""

from __future__ import annotations

import math

import numpy as np

from ..fixedpoint import encode
from .protocol import Floor, Schedule, Stage, Truncation, Weighted


def power_of_two(n: int) -> bool:
    return n & (n - 1) == 0


def reciprocal(area: int, frac_bits: int) -> int:
    """round(2^F / area): the rounded reciprocal used when the area is not a power of two."""
    return int(encode(np.array([1.0 / area]), frac_bits)[0])


class Averaging:
    @classmethod
    def average(cls, node, fx, trace, total: np.ndarray) -> np.ndarray:
        """The reference's average of window sums ``total`` (scale 2^F), as the schedule declares it."""
        area = cls._area(node)
        schedule = cls.schedule(node, fx)
        trace.record(node, "sum", total)
        if power_of_two(area):
            return trace.truncate(total, schedule.truncation("sum"))
        scaled = total * reciprocal(area, fx.frac_bits)
        trace.record(node, "sum_times_reciprocal", scaled)
        return trace.truncate(scaled, schedule.truncation("sum_times_reciprocal"))

    @classmethod
    def schedule(cls, node, fx):
        """Per channel (one run-time iteration each): the sums (local), one truncation over the channel's
        outputs."""
        channels, count = cls._outputs(node)
        area, k, exact = cls._area(node), fx.total_bits, fx.protocol.exact
        if power_of_two(area):
            shift = int(math.log2(area))
            return Schedule([Truncation("sum", k + shift, shift, exact, channels, count)],
                            flow=[Weighted("sum", gain=area), Floor("sum")])
        return Schedule([Truncation("sum_times_reciprocal", 2 * k, fx.frac_bits, exact, channels, count)],
                        stored=[Stage("sum", k - 1 + math.ceil(math.log2(area)))],
                        flow=[Weighted("sum", gain=area), Weighted("sum_times_reciprocal", gain=reciprocal(area, fx.frac_bits)),
                              Floor("sum_times_reciprocal")])

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        area = cls._area(node)
        step = 2.0 ** -fx.frac_bits
        rounding = 0.0 if power_of_two(area) else in_peaks[0] * area * step / 2  # reciprocal rounded to 2^-F
        return float(in_errors[0]) + rounding + step
