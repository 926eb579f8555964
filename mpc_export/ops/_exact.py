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
