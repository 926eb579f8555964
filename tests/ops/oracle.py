"""An integer oracle for every executable op, written from each op's docstring formula with Python ints
(object arrays), independent of the package's kernels: floor is Python's //, a maximum is max(), and every
shift, scale alignment and reciprocal is written out here as its docstring states it (x, w, bias,
new_gamma, new_beta at scale 2^F)."""

import numpy as np


def floor(v, shift: int):
    return np.vectorize(lambda a: int(a) // (1 << shift), otypes=[object])(v)


def relu(v):
    return np.vectorize(lambda a: max(int(a), 0), otypes=[object])(v)


def conv_sum(x, w, stride: int, pad: int):
    """sum(w * x) of NCHW x and OIHW w on the (strided, zero-padded) grid: (N, O, Ho, Wo) Python ints."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    padded = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), dtype=object)
    padded[:, :, pad:pad + h, pad:pad + wd] = x
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, o, ho, wo), dtype=object)
    for i in range(n):
        for oc in range(o):
            for y in range(ho):
                for xx in range(wo):
                    window = padded[i, :, y * stride:y * stride + k, xx * stride:xx * stride + k]
                    out[i, oc, y, xx] = sum(int(a) * int(b) for a, b in zip(window.ravel(), w[oc].ravel()))
    return out


def conv(x, w, bias, stride: int, pad: int, f: int):
    """acc = sum(w * x) + bias * 2^F on the (strided, zero-padded) grid: (N, O, Ho, Wo) Python ints."""
    return conv_sum(x, w, stride, pad) + np.array([int(b) * 2**f for b in bias], dtype=object)[None, :, None, None]


def windows(x, k: int, s: int):
    """(N, C, Ho, Wo, k*k) of k x k windows with stride s, no padding."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = np.empty((n, c, ho, wo, k * k), dtype=object)
    for y in range(ho):
        for xx in range(wo):
            out[:, :, y, xx, :] = x[:, :, y * s:y * s + k, xx * s:xx * s + k].reshape(n, c, k * k)
    return out


def max_windows(x, k, s):
    return _max_last(windows(x, k, s))


def _max_last(v):
    flat = v.reshape(-1, v.shape[-1])
    return np.array([max(int(a) for a in row) for row in flat], dtype=object).reshape(v.shape[:-1])


def _sum_last(v):
    flat = v.reshape(-1, v.shape[-1])
    return np.array([sum(int(a) for a in row) for row in flat], dtype=object).reshape(v.shape[:-1])


def average(total, area: int, f: int):
    """floor(sum / area) for a power-of-two area, else floor(sum * round(2^F / area) / 2^F)."""
    if area & (area - 1) == 0:
        return floor(total, area.bit_length() - 1)
    reciprocal = int(np.floor(2**f / area + 0.5))  # round half up; 2^F / area is never a tie here
    return floor(total * reciprocal, f)


def conv_block(node, q, f, x):
    """The conv_block docstring's schedule: acc, [2x2 max], [x new_gamma + new_beta 2^2F, floor 2^2F | floor
    2^F], [ReLU], [2x2 average: floor(sum / 4)]."""
    a = node.attrs
    k = q["weight"].shape[2]
    acc = conv(x, q["weight"], q["bias"], a.get("stride", 1), int(a.get("padding", k // 2)), f)
    if a.get("pre_pool"):
        acc = max_windows(acc, 2, 2)
    if a.get("affine", True):
        g = np.array(q["new_gamma"], dtype=object)[None, :, None, None]
        b = np.array(q["new_beta"], dtype=object)[None, :, None, None]
        y = floor(acc * g + b * 2**(2 * f), 2 * f)
    else:
        y = floor(acc, f)
    if a.get("relu", True):
        y = relu(y)
    if a.get("post_pool"):
        y = floor(_sum_last(windows(y, 2, 2)), 2)
    return y


def dense(node, q, f, x):
    """acc = sum(w * x) + bias * 2^F; floor(acc / 2^F); [ReLU]."""
    flat = x.reshape(x.shape[0], -1)
    w, b = q["weight"], q["bias"]
    acc = np.array([[sum(int(wi) * int(xi) for wi, xi in zip(w[o], row)) + int(b[o]) * 2**f for o in range(w.shape[0])]
                    for row in flat], dtype=object)
    y = floor(acc, f)
    return relu(y) if node.attrs["relu"] else y


def maxpool(node, q, f, x):
    k = int(node.attrs.get("kernel", 2))
    return max_windows(x, k, int(node.attrs.get("stride", k)))


def avgpool(node, q, f, x):
    k = int(node.attrs.get("kernel", 2))
    return average(_sum_last(windows(x, k, int(node.attrs.get("stride", k)))), k * k, f)


def global_maxpool(node, q, f, x):
    n, c, h, w = x.shape
    return _max_last(x.reshape(n, c, 1, 1, h * w))


def global_avgpool(node, q, f, x):
    n, c, h, w = x.shape
    return average(_sum_last(x.reshape(n, c, 1, 1, h * w)), h * w, f)


def add(node, q, f, a, b):
    y = np.array(a, dtype=object) + np.array(b, dtype=object)
    return relu(y) if node.attrs.get("relu") else y


def shortcut_a(node, q, f, x):
    s, lo, hi = node.attrs["stride"], node.attrs["pad_lo"], node.attrs["pad_hi"]
    sub = x[:, :, ::s, ::s]
    n, c, h, w = sub.shape
    out = np.zeros((n, c + lo + hi, h, w), dtype=object)
    out[:, lo:lo + c] = sub
    return out


def input(node, q, f, x):  # noqa: A001 (the op's name)
    return np.array(x, dtype=object)


ORACLES = {"conv_block": conv_block, "dense": dense, "maxpool": maxpool, "avgpool": avgpool, "global_maxpool": global_maxpool,
           "global_avgpool": global_avgpool, "add": add, "shortcut_a": shortcut_a, "input": input}
