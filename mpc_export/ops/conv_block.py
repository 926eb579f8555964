"""conv_block: 3x3 convolution (stride 1, padding 1) + bias, folded batch norm, ReLU, optional 2x2 avg pool.

This is the fused block FANNG-MPC's pruned-ResNet program runs, with its batched truncation schedule
(all integers; x at scale 2^F, w, bias, new_gamma, new_beta at scale 2^F):

    acc     = sum(w * x) + bias * 2^F                      scale 2^2F
    scaled  = acc * new_gamma + new_beta * 2^2F            scale 2^3F  (|v| < 2^(2K-1): TruncPr bit length 2K)
    y       = relu(floor(scaled / 2^2F))                   scale 2^F   (|v| < 2^(K-1): LTZ on K bits)
    pool    = floor((y00 + y01 + y10 + y11) / 4)           scale 2^F   (sum < 2^(K+1): TruncPr bit length K+2)

The MPC program replaces each floor by TruncPr, which may add 1; ``error_ulp`` bounds the effect.
"""

from __future__ import annotations

import numpy as np

from ..quantize.fixedpoint import FLOAT64_EXACT_BITS, floor_shift, max_abs, to_exact
from ..reference import exact
from ._kernels import conv2d_float, pool2x2_sum, window_out
from .base import Op, Stage


def _weight_abs_sums(node) -> np.ndarray:
    return np.sum(np.abs(node.qparams["weight"].astype(object)), axis=(1, 2, 3))


class ConvBlock(Op):
    name = "conv_block"
    params = (("weight", "OIHW"), ("bias", "O"), ("new_gamma", "O"), ("new_beta", "O"))
    executable = True
    template = "conv_block"
    input_layout = "padded"

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        c, h, w = in_shapes[0]
        o, i, kh, kw = node.params["weight"].shape
        assert (i, kh, kw) == (c, 3, 3)
        if node.attrs["pool"]:
            return (o, window_out(h, 2, 2, 0), window_out(w, 2, 2, 0))
        return (o, h, w)

    @classmethod
    def ref_float(cls, node, x):
        p = node.params
        y = conv2d_float(x, p["weight"], p["bias"], 1, 1)
        y = np.maximum(y * p["new_gamma"][:, None, None] + p["new_beta"][:, None, None], 0.0)
        return pool2x2_sum(y) / 4.0 if node.attrs["pool"] else y

    @classmethod
    def macs(cls, node, graph):
        o, i, kh, kw = node.params["weight"].shape
        c, h, w = node.in_shapes[0]
        return int(o * i * kh * kw * h * w)

    @classmethod
    def ref_fixed(cls, node, fx, x, trace):
        """The schedule in the module docstring, exact. Fast path: integer-valued float64 arrays when a
        bound from the weights and the actual input proves every intermediate < 2^53; else int64 / Python ints."""
        q = node.qparams
        f = fx.frac_bits
        acc_bound = max_abs(x) * int(np.max(_weight_abs_sums(node))) + max_abs(q["bias"]) * 2**f
        scaled_bound = acc_bound * max_abs(q["new_gamma"]) + max_abs(q["new_beta"]) * 2 ** (2 * f)
        if scaled_bound < 2**FLOAT64_EXACT_BITS:
            return cls._ref_fixed_float64(node, fx, x, trace)
        return cls._ref_fixed_int(node, fx, x, trace)

    @classmethod
    def _ref_fixed_float64(cls, node, fx, x, trace):
        q = node.qparams
        f = fx.frac_bits
        acc = conv2d_float(x.astype(np.float64), q["weight"].astype(np.float64), q["bias"].astype(np.float64) * 2.0**f, 1, 1)
        trace.record(node, "accumulator", acc)
        scaled = acc
        scaled *= q["new_gamma"].astype(np.float64)[None, :, None, None]
        scaled += (q["new_beta"].astype(np.float64) * 2.0 ** (2 * f))[None, :, None, None]
        trace.record(node, "scaled", scaled)
        y = np.floor(scaled * 2.0 ** (-2 * f))
        trace.record(node, "truncated", y)
        np.maximum(y, 0.0, out=y)
        if node.attrs["pool"]:
            total = pool2x2_sum(y)
            trace.record(node, "pool_sum", total)
            y = np.floor(total * 0.25)
        return y.astype(np.int64)

    @classmethod
    def _ref_fixed_int(cls, node, fx, x, trace):
        q = node.qparams
        f = fx.frac_bits
        acc = exact.conv2d(x, q["weight"], padding=1)
        bound = max_abs(acc) + max_abs(q["bias"]) * 2**f
        acc = to_exact(acc, bound) + to_exact(q["bias"], bound)[None, :, None, None] * 2**f
        trace.record(node, "accumulator", acc)
        gamma, beta = q["new_gamma"], q["new_beta"]
        bound = bound * max_abs(gamma) + max_abs(beta) * 2 ** (2 * f)
        scaled = to_exact(acc, bound) * to_exact(gamma, bound)[None, :, None, None] + to_exact(beta, bound)[None, :, None, None] * 2 ** (2 * f)
        trace.record(node, "scaled", scaled)
        y = floor_shift(scaled, 2 * f)
        trace.record(node, "truncated", y)
        y = np.maximum(y, 0)
        if node.attrs["pool"]:
            total = pool2x2_sum(y)
            trace.record(node, "pool_sum", total)
            y = floor_shift(total, 2)
        return y.astype(np.int64) if y.dtype == object and max_abs(y) < 2**62 else y

    @classmethod
    def stages(cls, node, fx):
        k = fx.total_bits
        stages = [Stage("accumulator", 2 * k - 1), Stage("scaled", 2 * k - 1), Stage("truncated", k - 1)]
        if node.attrs["pool"]:
            stages.append(Stage("pool_sum", k + 1))
        return stages

    @classmethod
    def worst_case(cls, node, fx, in_bound):
        q = node.qparams
        f = fx.frac_bits
        sums = _weight_abs_sums(node)
        acc = [int(s) * in_bound + abs(int(b)) * 2**f for s, b in zip(sums, q["bias"])]
        scaled = [a * abs(int(g)) + abs(int(be)) * 2 ** (2 * f) for a, g, be in zip(acc, q["new_gamma"], q["new_beta"])]
        truncated = max(scaled) // 2 ** (2 * f) + 1
        out = {"accumulator": max(acc), "scaled": max(scaled), "truncated": truncated}
        if node.attrs["pool"]:
            out["pool_sum"] = 4 * truncated
        return out, truncated

    @classmethod
    def error_ulp(cls, node, fx, in_error):
        """|MPC - reference| after this block, in units of 2^-F, given that bound on its input.

        The accumulator deviates by at most sum|w_o| * in_error (scale 2^2F), the scaled value by
        |new_gamma_o| times that; flooring a deviation d by 2^2F gives at most ceil(d / 2^2F); TruncPr
        adds at most 1; ReLU does not amplify; the pool's sum of four such deviations floored by 4 keeps
        the bound and its TruncPr adds 1 more.
        """
        q = node.qparams
        f = fx.frac_bits
        sums = _weight_abs_sums(node)
        worst = max(int(s) * abs(int(g)) for s, g in zip(sums, q["new_gamma"])) * in_error
        err = -(-worst // 2 ** (2 * f)) + 1
        if node.attrs["pool"]:
            err += 1
        return err

    @classmethod
    def float_tolerance(cls, node, fx, in_error, in_peak):
        """Quantization step x fan-in: each weight, bias, new_gamma, new_beta is off by <= 2^-(F+1);
        the input by in_error; each floor loses < 2^-F."""
        half, step = 2.0 ** -(fx.frac_bits + 1), 2.0 ** -fx.frac_bits
        w = node.params["weight"]
        sums = np.sum(np.abs(w), axis=(1, 2, 3))
        fan_in = w[0].size
        acc_err = sums * in_error + fan_in * half * (in_peak + in_error) + half
        acc_peak = sums * in_peak + np.abs(node.params["bias"])
        gamma_q = np.abs(node.qparams["new_gamma"]) / 2.0**fx.frac_bits
        err = float(np.max(gamma_q * acc_err + half * acc_peak + half)) + step
        return err + step if node.attrs["pool"] else err

    @classmethod
    def cost(cls, node, fx):
        o, i, _, _ = node.params["weight"].shape
        c, h, w = node.in_shapes[0]
        grid = h * (w + 2)  # the program computes on the H x (W+2) grid of the padded plane
        per_channel_mults = i * 9 * grid + grid + grid  # taps, x new_gamma, ReLU's multiplication
        pooled = (h // 2) * (w // 2) if node.attrs["pool"] else 0
        return {
            "multiplications": o * per_channel_mults,
            "truncations": o * (grid + pooled),
            "comparisons": o * grid,
        }

    @classmethod
    def template_args(cls, node, fx, layout):
        c, h, w = node.in_shapes[0]
        oc, oh, ow = node.shape
        target = layout.buffer(node)
        args = {
            "name": node.name.upper(),
            "source": layout.buffer_of_input(node).name,
            "weight": layout.param(node, "weight"),
            "bias": layout.param(node, "bias"),
            "gamma": layout.param(node, "new_gamma"),
            "beta": layout.param(node, "new_beta"),
            "channels_in": c,
            "height": h,
            "width": w,
            "channels_out": oc,
            "grid": h * (w + 2),
            "pool": bool(node.attrs["pool"]),
            "target": target.name,
            "out_height": oh,
            "out_width": ow,
        }
        if target.layout == "padded":
            args.update(target_offset=ow + 3, target_channel_stride=(oh + 2) * (ow + 2), target_row_stride=ow + 2, out_columns=ow + 2)
        else:
            if not node.attrs["pool"]:
                raise NotImplementedError(f"{node.name}: a convolution without pooling must feed a convolution")
            args.update(target_offset=0, target_channel_stride=oh * ow, target_row_stride=ow, out_columns=ow)
        args["pool_entries"] = oh * args["out_columns"]
        return args
