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
from ..compiled import over_slices
from . import _compiled
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
# An integer is written in balanced base-256 digits, each in [-128, 127] (int8). With x's digit patches
# p_i and the weight's digits w_j, the convolution is sum_k 256^k A_k with A_k = sum_(i + j = k) p_i @ w_j.
# Each A_k is one int8 GEMM: the patches p_i of the pairs side by side (one buffer holds every p_i in
# order) against the weight digits w_(k - i) stacked (one matrix holds them in reverse order), so the
# GEMM itself adds the pairs, in int32: |A_k| <= pairs * 128 * 128 * patch size. The caller recombines
# the terms in int64 (_compiled.conv_tail), fused with what follows the convolution.

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
    """int8 digits d_0 .. d_(count-1) in [-128, 127] with values = sum_i d_i * 256^i, each a C-contiguous
    tensor of the shape of ``values`` (an int64 tensor with every |v| <= the bound that gave ``count``)."""
    rest = values.clone(memory_format=torch.contiguous_format)
    digits = []
    for i in range(count):
        digits.append(rest.to(torch.int8))  # the cast keeps the low 8 bits, two's complement: v mod 256 in [-128, 127]
        if i < count - 1:
            rest.add_(128).bitwise_right_shift_(DIGIT_BITS)  # (v - d) / 256, as v + 128 = (d + 128) + 256 * rest
    return digits


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _term_bound(x_bound: int, weight_bound: int, patch_size: int) -> int:
    """A bound on each int8 GEMM term A_k of conv2d_int8: at most min(digits of x, digits of w) pairs of
    digits share a position k, each pair contributing patch_size products of at most 128 * 128."""
    pairs = min(balanced_digit_count(x_bound), balanced_digit_count(weight_bound))
    return pairs * 128 * 128 * patch_size


def int8_conv_is_exact(x_bound: int, weight_bound: int, patch_size: int) -> bool:
    """Whether conv2d_int8 is exact for |x| <= x_bound, |w| <= weight_bound and patch_size (= C * kh * kw
    after padding C) products per output: each int8 GEMM output A_k (a sum of pairs * patch_size products
    of two digits, each at most 128 * 128) stays below 2^31, and the Horner recombination in int64 (every
    value below 256^(digits of x + digits of w) * patch_size) below 2^63."""
    x_digits, w_digits = balanced_digit_count(x_bound), balanced_digit_count(weight_bound)
    recombined_bound = 2 ** (DIGIT_BITS * (x_digits + w_digits)) * patch_size
    return _term_bound(x_bound, weight_bound, patch_size) < INT32_LIMIT and recombined_bound < INT64_LIMIT


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


class ScratchBuffers:
    """Work tensors reused from one call to the next, so that a batch writes into pages it already owns
    instead of faulting in fresh ones: one flat buffer per (purpose, dtype), grown when a call needs more.
    A tensor taken is valid until the next take of the same purpose."""

    def __init__(self):
        self._flat: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def take(self, purpose: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised contiguous tensor of ``shape`` and ``dtype``."""
        numel = 1
        for size in shape:
            numel *= int(size)
        flat = self._flat.get((purpose, dtype))
        if flat is None or flat.numel() < numel:
            flat = self._flat[(purpose, dtype)] = torch.empty(numel, dtype=dtype)
        return flat[:numel].view(shape)


class _FreshBuffers(ScratchBuffers):
    """Every take a new tensor: results may be kept across calls."""

    def take(self, purpose: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype)


def centre(low: int, high: int) -> tuple[int, int]:
    """(c, bound) with |v - c| <= bound for every integer v in [low, high]: shifting values by c halves the
    range their balanced digits must cover (non-negative ReLU outputs up to 2^16 need 2 digits, not 3)."""
    c = (low + high) // 2
    return c, max(high - c, c - low)


def _patch_matrix(planes: torch.Tensor, kernel: int, stride: int, out: torch.Tensor) -> None:
    """im2col of the digit planes (N, digits, Hp, Wp, C') into ``out`` (N * Ho * Wo, digits, kernel^2 * C'),
    columns ordered (kh, kw, c): a window row's kernel taps are kernel * C' consecutive bytes of a plane."""
    n, digits, hp, wp, cp = planes.shape
    ho, wo = (hp - kernel) // stride + 1, (wp - kernel) // stride + 1
    s_image, s_digit, s_row = planes.stride()[:3]
    windows = planes.as_strided((n, ho, wo, digits, kernel, kernel * cp), (s_image, stride * s_row, stride * cp, s_digit, s_row, 1))
    out.view(n, ho, wo, digits, kernel, kernel * cp).copy_(windows)


def conv2d_int8(x: np.ndarray, x_bound: int, weight_digits: list[torch.Tensor], kernel: int, padding: int,
                stride: int = 1, shift: int = 0, scratch: ScratchBuffers | None = None) -> torch.Tensor:
    """The int8 GEMM terms A_k of sum(w * (x - shift)) over every window: an int32 tensor (K, N * Ho * Wo, O')
    with sum_k 256^k A_k[:, o] the convolution's output channel o, rows in NHW order, O' the weight's
    columns (output channels rounded up to 8, the extra ones zero). x: integer NCHW int64 array (any memory
    layout; NHWC memory is read in place) with every |x - shift| <= x_bound and |shift| <= x_bound (the
    padding's shifted value -shift is written in the same digits); the weight as weight_digit_matrices. The
    zero padding of x counts as x = 0 (it reads -shift), so the caller adds shift * sum(w_o) per output
    channel to get sum(w * x). The caller checks int8_conv_is_exact(x_bound, ...) and that N * Ho * Wo > 16.

    With ``scratch`` the work tensors and the result live in its buffers (valid until the next call with
    the same scratch); without, every call allocates afresh."""
    scratch = scratch if scratch is not None else _FreshBuffers()
    n, channels, height, width = x.shape
    x_count, w_count = balanced_digit_count(x_bound), len(weight_digits)
    planes = scratch.take("digit planes", (n, x_count, height + 2 * padding, width + 2 * padding, padded_channels(channels)), torch.int8)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.int64)
    over_slices(_compiled.digit_planes, n, nhwc, shift, padding, planes.numpy())
    rows = n * window_out(height, kernel, stride, padding) * window_out(width, kernel, stride, padding)
    patch = kernel * kernel * padded_channels(channels)
    patches = scratch.take("patches", (rows, x_count, patch), torch.int8)  # p_0 .. p_(n-1) side by side
    _patch_matrix(planes, kernel, stride, patches)
    columns = weight_digits[0].shape[1]
    stacked = torch.cat([digit.t() for digit in reversed(weight_digits)], dim=1).t()  # w_(m-1) .. w_0, column-major
    terms = scratch.take("terms", (x_count + w_count - 1, rows, columns), torch.int32)
    for k in range(len(terms)):
        low, high = max(0, k - w_count + 1), min(k, x_count - 1)  # the x digits i paired with w_(k - i)
        first_weight = w_count - 1 - (k - low)  # w_(k - low)'s block in ``stacked``
        torch._int_mm(patches[:, low:high + 1].reshape(rows, -1),
                      stacked[first_weight * patch:(first_weight + high - low + 1) * patch], out=terms[k])  # exact: int8_conv_is_exact
    return terms
