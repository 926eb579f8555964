"""Kernels shared by several ops: float conv / pool via torch (float64 or float32), integer pooling sums."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def conv2d_float(x, weight, bias, stride, padding):
    """Float NCHW convolution of x by an OIHW numpy weight, computed in the weight's dtype (float64 or
    float32: x and the bias are cast to it). The result is an NCHW array over channels-last (NHWC) memory:
    PyTorch's CPU convolutions and pools run several times faster in that layout (a 2x2 average pool 6x),
    and the next convolution reads it as it is."""
    dtype = weight.dtype
    x = np.asarray(x, dtype=dtype)
    if any(step < 0 for step in x.strides):  # torch.from_numpy takes positive strides only
        x = np.ascontiguousarray(x)
    out = F.conv2d(
        torch.from_numpy(x),
        torch.from_numpy(weight).contiguous(memory_format=torch.channels_last),
        None if bias is None else torch.from_numpy(np.asarray(bias, dtype=dtype)),
        stride=stride,
        padding=padding,
    )
    return out.numpy()


def window_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution / pooling window (floor mode): the one shape rule for windows."""
    return (size + 2 * padding - kernel) // stride + 1


def pool2x2_sum(x: np.ndarray) -> np.ndarray:
    """Sum of each non-overlapping 2x2 window of an (N, C, H, W) array (int or float, exact for ints)."""
    n, c, h, w = x.shape
    return x[:, :, : h - h % 2, : w - w % 2].reshape(n, c, h // 2, 2, w // 2, 2).sum(axis=(3, 5))


def pool2x2_max(x: np.ndarray) -> np.ndarray:
    """Max of each non-overlapping 2x2 window of an (N, C, H, W) array."""
    n, c, h, w = x.shape
    return x[:, :, : h - h % 2, : w - w % 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
