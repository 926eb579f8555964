"""Exact integer linear algebra at BLAS speed.

A float64 product is exact while every partial sum stays below 2^53, which a bound on
max|x| * sum|w| proves before the call. When it does not hold, the activations are split into
base-2^s limbs so that each partial product is exact, and the limbs are recombined in int64 (or
Python ints when even int64 could overflow). Results never depend on floating-point rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..fixedpoint import FLOAT64_EXACT_BITS, fits_int64, max_abs
from ._kernels import window_out


def _combine(parts: list[np.ndarray], limb_bits: int, bound: int) -> np.ndarray:
    dtype = np.int64 if fits_int64(bound) else object
    total = np.zeros(parts[0].shape, dtype=dtype)
    for index, part in enumerate(parts):
        total = total + part.astype(dtype) * (2 ** (limb_bits * index) if dtype is object else np.int64(2 ** (limb_bits * index)))
    return total


def _limbs(x: np.ndarray, limb_bits: int, count: int) -> list[np.ndarray]:
    """x = sum_i limb_i * 2^(limb_bits * i) with limbs in [0, 2^limb_bits) except the signed top one."""
    x = x.astype(object) if x.dtype == object else x.astype(np.int64)
    limbs = []
    rest = x
    for _ in range(count - 1):
        limbs.append((rest % (2**limb_bits)).astype(np.int64))
        rest = rest >> limb_bits
    limbs.append(rest.astype(np.int64))
    return limbs


def _exact_apply(x: np.ndarray, weight_abs_sum: int, fn) -> np.ndarray:
    """fn(float64 array) -> float64 array, linear in x; returns the exact integer result."""
    xmax = max_abs(x)
    bound = xmax * weight_abs_sum
    if bound < 2**FLOAT64_EXACT_BITS:
        return np.rint(fn(x.astype(np.float64))).astype(np.int64)
    wbits = max(1, int(weight_abs_sum).bit_length())
    limb_bits = max(1, FLOAT64_EXACT_BITS - 1 - wbits)
    count = -(-(int(xmax).bit_length() + 1) // limb_bits)
    parts = [np.rint(fn(limb.astype(np.float64))).astype(np.int64) for limb in _limbs(x, limb_bits, count)]
    return _combine(parts, limb_bits, bound)


def conv2d(x: np.ndarray, weight: np.ndarray, padding: int, stride: int = 1) -> np.ndarray:
    """Exact sum(w * x) of integer NCHW x and OIHW weight (no bias), scale = scale(x) * scale(w)."""
    w64 = torch.from_numpy(weight.astype(np.float64))
    abs_sum = int(np.max(np.sum(np.abs(weight.astype(np.float64)), axis=(1, 2, 3)))) if weight.size else 0

    def fn(xf):
        return F.conv2d(torch.from_numpy(np.ascontiguousarray(xf)), w64, padding=padding, stride=stride).numpy()

    return _exact_apply(x, abs_sum, fn)


def linear(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Exact x @ weight.T for integer (N, in) x and (out, in) weight."""
    wt = weight.astype(np.float64).T.copy()
    abs_sum = int(np.max(np.sum(np.abs(weight.astype(np.float64)), axis=1))) if weight.size else 0
    return _exact_apply(x, abs_sum, lambda xf: xf @ wt)


# --- int8 GEMMs: exact integer convolutions on torch._int_mm -----------------------------------------
#
# An integer is written in balanced base-256 digits, each in [-128, 127] (int8). The product of two
# digits is at most 128 * 128 = 2^14 in magnitude, so an int32 accumulator holds a sum of k such products
# exactly while k * 2^14 < 2^31. A convolution of x by w is then the sum over digit pairs (i, j) of
# 256^(i + j) * (int8 GEMM of x's digit i by w's digit j), recombined in int64.

DIGIT_BITS = 8
INT32_LIMIT = 2**31
INT64_LIMIT = 2**63
INT_MM_MIN_ROWS = 17  # torch._int_mm needs m > 16
INT_MM_MULTIPLE = 8  # ... and k, n multiples of 8


def balanced_digit_count(bound: int) -> int:
    """How many balanced base-256 digits (each in [-128, 127]) represent every integer v with |v| <= bound."""
    count = 1
    while 127 * (256**count - 1) // 255 < bound:
        count += 1
    return count


def balanced_digits(values: torch.Tensor, count: int) -> list[torch.Tensor]:
    """int8 digits d_0 .. d_(count-1) in [-128, 127] with values = sum_i d_i * 256^i (same shape and
    layout as ``values``, an int64 tensor with every |v| <= the bound that gave ``count``)."""
    digits = []
    rest = values
    for _ in range(count - 1):
        digits.append(rest.to(torch.int8))  # the cast keeps the low 8 bits, two's complement: v mod 256 in [-128, 127]
        rest = (rest + 128).bitwise_right_shift_(DIGIT_BITS)  # (v - d) / 256, as v + 128 = (d + 128) + 256 * rest
    digits.append(rest.to(torch.int8))
    return digits


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def int8_conv_is_exact(x_bound: int, weight_bound: int, patch_size: int) -> bool:
    """Whether conv2d_int8 is exact for |x| <= x_bound, |w| <= weight_bound and patch_size (= C * kh * kw
    after padding C) products per output: each int32 GEMM output, and each group of GEMMs summed in
    int32, stays below 2^31, and the digit-weighted recombination stays below 2^63 in int64."""
    x_digits, w_digits = balanced_digit_count(x_bound), balanced_digit_count(weight_bound)
    pairs_per_group = min(x_digits, w_digits)
    group_bound = pairs_per_group * 128 * 128 * patch_size
    recombined_bound = 2 ** (DIGIT_BITS * (x_digits + w_digits)) * patch_size
    return group_bound < INT32_LIMIT and recombined_bound < INT64_LIMIT


def padded_channels(channels: int) -> int:
    """Input channels padded with zeros so that a patch (C * kh * kw values) is a multiple of 8."""
    return _round_up(channels, INT_MM_MULTIPLE)


def weight_digit_matrices(weight: np.ndarray) -> list[torch.Tensor]:
    """The OIHW integer weight as int8 GEMM operands, one per balanced digit: each (kh * kw * C', O')
    with rows ordered (kh, kw, c), C' = padded_channels(C), O' = O rounded up to a multiple of 8 (zero
    padding), stored column-major (the transpose of a contiguous (O', k) matrix)."""
    o, c, kh, kw = weight.shape
    w = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.int64))
    w = F.pad(w, (0, 0, 0, 0, 0, padded_channels(c) - c, 0, _round_up(o, INT_MM_MULTIPLE) - o))
    rows = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)  # (O', kh * kw * C')
    return [digit.contiguous().t() for digit in balanced_digits(rows, balanced_digit_count(max_abs(weight)))]


def _patch_matrix(x_digit: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """im2col of one int8 digit of x (logical NHWC, any memory layout): (N * Ho * Wo, kernel^2 * C')
    with columns ordered (kh, kw, c), channels zero-padded to C' = padded_channels(C)."""
    c = x_digit.shape[3]
    padded = F.pad(x_digit, (0, padded_channels(c) - c, padding, padding, padding, padding)).contiguous()
    n, hp, wp, cp = padded.shape
    ho, wo = (hp - kernel) // stride + 1, (wp - kernel) // stride + 1
    sn, sh, sw, sc = padded.stride()
    patches = padded.as_strided((n, ho, wo, kernel, kernel, cp), (sn, stride * sh, stride * sw, sh, sw, sc))
    return patches.reshape(n * ho * wo, kernel * kernel * cp)


def conv2d_int8(x: torch.Tensor, x_bound: int, weight_digits: list[torch.Tensor], out_channels: int, kernel: int,
                padding: int, stride: int = 1) -> torch.Tensor:
    """Exact sum(w * x) as an int64 tensor, logical NHWC (N, Ho, Wo, O), from an integer NCHW int64 x with
    every |x| <= x_bound and the weight's digit matrices (weight_digit_matrices). The caller checks
    int8_conv_is_exact and that N * Ho * Wo > 16 beforehand."""
    n = x.shape[0]
    x_digits = balanced_digits(x, balanced_digit_count(x_bound))
    patches = [_patch_matrix(digit.permute(0, 2, 3, 1), kernel, stride, padding) for digit in x_digits]
    groups: list[torch.Tensor | None] = [None] * (len(x_digits) + len(weight_digits) - 1)
    for i, patch in enumerate(patches):
        for j, w_digit in enumerate(weight_digits):
            product = torch._int_mm(patch, w_digit)  # int32, exact by int8_conv_is_exact
            groups[i + j] = product if groups[i + j] is None else groups[i + j].add_(product)
    acc = torch.empty(groups[-1].shape, dtype=torch.int64)
    acc.copy_(groups[-1])
    widened = torch.empty_like(acc)
    for group in reversed(groups[:-1]):  # Horner: acc = acc * 256 + group
        widened.copy_(group)
        torch.add(widened, acc, alpha=256, out=acc)
    height, width = window_out(x.shape[2], kernel, stride, padding), window_out(x.shape[3], kernel, stride, padding)
    return acc.view(n, height, width, acc.shape[1])[..., :out_channels]
