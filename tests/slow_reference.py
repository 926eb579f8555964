"""An independent, slow implementation of the documented fixed-point schedule (docs/schedule.md), straight
from its definition with Python integers (object arrays), used as an oracle for the fast reference."""

import numpy as np


def conv3x3_pad1(x, w):
    """x (C, H, W) Python ints, w (O, C, 3, 3) -> sum(w * x) (O, H, W), explicit loops over taps."""
    c, h, wd = x.shape
    padded = np.zeros((c, h + 2, wd + 2), dtype=object)
    padded[:, 1:-1, 1:-1] = x
    out = np.zeros((w.shape[0], h, wd), dtype=object)
    for kh in range(3):
        for kw in range(3):
            window = padded[:, kh:kh + h, kw:kw + wd].reshape(c, -1)  # (C, H*W)
            out += np.dot(w[:, :, kh, kw], window).reshape(w.shape[0], h, wd)
    return out


def floor_div_pow2(v, shift):
    return np.vectorize(lambda a: int(a) // (1 << shift), otypes=[object])(v)


def run(layers, x, frac_bits):
    """layers: list of dicts with kind conv/dense and integer tensors; x: (C, H, W) ints at 2^F."""
    f = frac_bits
    act = np.array(x, dtype=object)
    outs = []
    for layer in layers:
        q = {k: np.array(v, dtype=object) for k, v in layer["q"].items()}
        if layer["kind"] == "conv":
            acc = conv3x3_pad1(act, q["weight"]) + q["bias"][:, None, None] * (1 << f)
            scaled = acc * q["new_gamma"][:, None, None] + q["new_beta"][:, None, None] * (1 << (2 * f))
            y = floor_div_pow2(scaled, 2 * f)
            y = np.where(y > 0, y, 0)
            if layer["pool"]:
                c, h, w = y.shape
                total = y.reshape(c, h // 2, 2, w // 2, 2).sum(axis=(2, 4))
                y = floor_div_pow2(total, 2)
            act = y
        else:
            flat = act.reshape(-1)
            acc = np.dot(q["weight"], flat) + q["bias"] * (1 << f)
            y = floor_div_pow2(acc, f)
            if layer["relu"]:
                y = np.where(y > 0, y, 0)
            act = y
        outs.append(act)
    return outs
