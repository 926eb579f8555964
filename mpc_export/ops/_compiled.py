"""Loops compiled by numba where PyTorch would make many passes over memory: the balanced digits of an
int8 convolution's input, and a convolution block's tail (the GEMM terms recombined, the affine step, the
floor, ReLU and the 2x2 pools, with the extremes its stages record) in one pass per image.

Each kernel works on images [first, stop) of a batch (compiled.over_slices runs it in threads, each
slice with its own extremes)."""

from __future__ import annotations

import numba
import numpy as np

from ..compiled import kernel


@kernel
def digit_planes(first, stop, x, shift, padding, out):
    """Balanced base-256 digits of x - shift with a ``padding``-wide border holding the digits of -shift
    (the padding's value, 0, shifted), channels padded to C' with the same digits (they meet only zero
    weights). x: (N, H, W, C) int64, NHWC, C-contiguous; out: (N, digits, H + 2p, W + 2p, C')
    int8, C-contiguous. Digit i is ((v + B) >> 8i & 255) - 128 with B = 128 * (1 + 256 + ... +
    256^(digits-1)): the base-256 digits of v + B, each less 128, exact for |v| within the digit count's
    bound (balanced_digit_count)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    digits, padded_height, padded_width, padded_channels = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    bias = 0
    for _ in range(digits):
        bias = bias * 256 + 128
    for n in range(first, stop):
        for i in range(digits):
            bits = 8 * i
            fill = (((-shift + bias) >> bits) & 255) - 128
            for y in range(padded_height):  # the border and the padded channels; the interior is overwritten
                for x_ in range(padded_width):
                    for c in range(padded_channels):
                        out[n, i, y, x_, c] = fill
            for y in range(height):
                for x_ in range(width):
                    for c in range(channels):
                        out[n, i, y + padding, x_ + padding, c] = (((x[n, y, x_, c] - shift + bias) >> bits) & 255) - 128


@kernel
def conv_tail(first, stop, terms, height, width, pre_pool, post_pool, gamma, offset, shift, relu, pool_shift,
              out, acc_low, acc_high, pooled_low, pooled_high, sum_low, sum_high):
    """A convolution block after its GEMMs, for images [first, stop): the accumulator
    acc = sum_k terms[k] * 256^k (terms: a tuple of K (N * height * width, >= O) int32 or int64 arrays, rows
    NHW, every partial sum proven < 2^63 by the caller); with pre_pool its 2x2 max (odd last row / column
    dropped); v = (acc * gamma[o] + offset[o]) >> shift (a floor; every value proven < 2^62); ReLU; with
    post_pool the 2x2 sum s, out = s >> pool_shift. out: (N * H' * W', O) int64, rows NHW.

    Extremes, per channel, min-ed / max-ed into the arrays given (int64, (O,)): acc_low/high over every
    accumulator value (the odd row / column a pre-pool drops too), pooled_low/high over the values the
    affine step reads, sum_low/high over the 2x2 sums (untouched without post_pool)."""
    channels = out.shape[1]
    window = 2 if pre_pool else 1
    value_height, value_width = height // window, width // window
    out_height, out_width = (value_height // 2, value_width // 2) if post_pool else (value_height, value_width)
    best = np.empty(channels, np.int64)
    values = np.empty((value_height * value_width if post_pool else 1, channels), np.int64)
    for n in range(first, stop):
        image_row = n * height * width
        for vy in range(value_height):
            for vx in range(value_width):
                target = values[vy * value_width + vx] if post_pool else out[(n * value_height + vy) * value_width + vx]
                if pre_pool:
                    for py in range(2):
                        for px in range(2):
                            row = image_row + (2 * vy + py) * width + 2 * vx + px
                            for o in range(channels):
                                a = _accumulator(terms, row, o)
                                acc_low[o] = min(acc_low[o], a)
                                acc_high[o] = max(acc_high[o], a)
                                best[o] = a if py + px == 0 else max(best[o], a)
                    for o in range(channels):
                        pooled_low[o] = min(pooled_low[o], best[o])
                        pooled_high[o] = max(pooled_high[o], best[o])
                        v = (best[o] * gamma[o] + offset[o]) >> shift
                        target[o] = max(v, 0) if relu else v
                else:
                    row = image_row + vy * width + vx
                    for o in range(channels):
                        a = _accumulator(terms, row, o)
                        acc_low[o] = min(acc_low[o], a)
                        acc_high[o] = max(acc_high[o], a)
                        v = (a * gamma[o] + offset[o]) >> shift
                        target[o] = max(v, 0) if relu else v
        if pre_pool:  # the accumulator values a 2x2 max pool drops still exist in the secure run
            for y in range(height):
                for x_ in range(width):
                    if y >= value_height * 2 or x_ >= value_width * 2:
                        for o in range(channels):
                            a = _accumulator(terms, image_row + y * width + x_, o)
                            acc_low[o] = min(acc_low[o], a)
                            acc_high[o] = max(acc_high[o], a)
        if post_pool:
            for y in range(out_height):
                for x_ in range(out_width):
                    top = 2 * y * value_width + 2 * x_
                    target = out[(n * out_height + y) * out_width + x_]
                    for o in range(channels):
                        total = values[top, o] + values[top + 1, o] + values[top + value_width, o] + values[top + value_width + 1, o]
                        sum_low[o] = min(sum_low[o], total)
                        sum_high[o] = max(sum_high[o], total)
                        target[o] = total >> pool_shift
    if not pre_pool:  # the affine step reads the accumulator itself
        for o in range(channels):
            pooled_low[o] = min(pooled_low[o], acc_low[o])
            pooled_high[o] = max(pooled_high[o], acc_high[o])


@numba.njit(inline="always")
def _accumulator(terms, row, o):
    """sum_k terms[k][row, o] * 256^k in int64 (Horner; the tuple's length is known when compiling)."""
    top = len(terms) - 1
    total = np.int64(terms[top][row, o])
    for k in range(top - 1, -1, -1):
        total = total * 256 + terms[k][row, o]
    return total
