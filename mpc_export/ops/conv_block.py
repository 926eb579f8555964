"""conv_block: 3x3 (padding 1) or 1x1 (padding 0) convolution, stride 1 or 2, + bias, optional 2x2 max pool, optional folded
batch norm, one truncation, optional ReLU, optional 2x2 average pool.

The batched schedule (all integers; x at scale 2^F; w, bias, new_gamma, new_beta at 2^F), declared in
``schedule``:

    acc     = sum(w * x) + bias * 2^F                         scale 2^2F
    acc     = max over 2x2 windows of acc   (if pre_pool)     scale 2^2F  (LTZ on differences, 2K bits)
    scaled  = acc * new_gamma + new_beta * 2^2F (if affine)   scale 2^3F  (truncation bit length 2K)
    y       = floor(scaled / 2^2F)   or floor(acc / 2^F)      scale 2^F   (|v| < 2^(K-1))
    y       = relu(y)                       (if relu)         (LTZ on K bits)
    y       = floor((y00 + y01 + y10 + y11) / 4) (post_pool)  scale 2^F   (truncation bit length K+2)

Each floor is an exact truncation by default; with probabilistic truncation (TruncPr) the program may
add 1, and ``error_ulp`` bounds the effect.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import FLOAT64_EXACT_BITS, max_abs, to_exact
from . import _exact as exact
from ._kernels import conv2d_float, pool2x2_max, pool2x2_sum, window_out
from .base import Op
from .protocol import Comparison, Products, Schedule, Stage, Truncation


def _weight_abs_sums(node) -> np.ndarray:
    """sum |w_q| per output channel, as Python ints (cached: the weights do not change)."""
    cached = node.attrs.get("_abs_sums")
    if cached is None or len(cached) != node.qparams["weight"].shape[0]:
        cached = [int(v) for v in np.sum(np.abs(node.qparams["weight"].astype(np.int64)), axis=(1, 2, 3))]
        node.attrs["_abs_sums"] = cached
    return np.array(cached, dtype=object)


class ConvBlock(Op):
    name = "conv_block"
    params = (("weight", "OIHW"), ("bias", "O"), ("new_gamma", "O"), ("new_beta", "O"))
    executable = True
    template = "conv_block"
    input_layout = "padded"
    output_layouts = ("padded", "dense")

    @classmethod
    def infer_shape(cls, node, in_shapes, graph):
        c, h, w = in_shapes[0]
        o, i, kh, kw = node.params["weight"].shape
        assert i == c and kh == kw and kh in (1, 3)
        s = node.attrs.get("stride", 1)
        h, w = window_out(h, kh, s, kh // 2), window_out(w, kw, s, kw // 2)
        if node.attrs.get("pre_pool"):
            h, w = h // 2, w // 2
        if node.attrs.get("post_pool"):
            h, w = h // 2, w // 2
        return (o, h, w)

    @classmethod
    def ref_float(cls, node, x):
        p, a = node.params, node.attrs
        y = conv2d_float(x, p["weight"], p["bias"], a.get("stride", 1), p["weight"].shape[2] // 2)
        if a.get("pre_pool"):
            y = pool2x2_max(y)
        if a.get("affine", True):
            y = y * p["new_gamma"][:, None, None] + p["new_beta"][:, None, None]
        if a.get("relu", True):
            y = np.maximum(y, 0.0)
        return pool2x2_sum(y) / 4.0 if a.get("post_pool") else y

    @classmethod
    def macs(cls, node, graph):
        o, i, kh, kw = node.params["weight"].shape
        c, h, w = node.in_shapes[0]
        s = node.attrs.get("stride", 1)
        return int(o * i * kh * kw * window_out(h, kh, s, kh // 2) * window_out(w, kw, s, kw // 2))

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        """The schedule in the module docstring, exact: integer-valued float64 arrays when a bound from
        the weights and the actual input proves every intermediate < 2^53, else int64 / Python ints."""
        q, a = node.qparams, node.attrs
        f = fx.frac_bits
        schedule = cls.schedule(node, fx)
        acc_bound = max_abs(x) * int(np.max(_weight_abs_sums(node))) + max_abs(q["bias"]) * 2**f
        bound = acc_bound * max_abs(q["new_gamma"]) + max_abs(q["new_beta"]) * 2 ** (2 * f) if a.get("affine", True) else acc_bound
        use_float = bound < 2**FLOAT64_EXACT_BITS
        if use_float:
            acc = conv2d_float(x.astype(np.float64), q["weight"].astype(np.float64), q["bias"].astype(np.float64) * 2.0**f,
                               a.get("stride", 1), q["weight"].shape[2] // 2)
        else:
            acc = exact.conv2d(x, q["weight"], padding=q["weight"].shape[2] // 2, stride=a.get("stride", 1))
            acc = to_exact(acc, bound) + to_exact(q["bias"], bound)[None, :, None, None] * 2**f
        trace.record(node, "accumulator", acc)
        if a.get("pre_pool"):
            acc = pool2x2_max(acc)
        if a.get("affine", True):
            gamma, beta = (q["new_gamma"].astype(np.float64), q["new_beta"].astype(np.float64) * 2.0 ** (2 * f)) if use_float else (
                to_exact(q["new_gamma"], bound), to_exact(q["new_beta"], bound) * 2 ** (2 * f))
            scaled = acc * gamma[None, :, None, None] + beta[None, :, None, None]
            trace.record(node, "scaled", scaled)
            y = trace.truncate(scaled, schedule.truncation("scaled"))
        else:
            y = trace.truncate(acc, schedule.truncation("accumulator"))
        trace.record(node, "truncated", y)
        if a.get("relu", True):
            y = np.maximum(y, 0)
        if a.get("post_pool"):
            total = pool2x2_sum(y)
            trace.record(node, "pool_sum", total)
            y = trace.truncate(total, schedule.truncation("pool_sum"))
        if use_float:
            return y.astype(np.int64)
        return y.astype(np.int64) if y.dtype == object and max_abs(y) < 2**62 else y

    @classmethod
    def schedule(cls, node, fx):
        """One output channel per run-time iteration (see the template): per (output, input) channel pair
        one round of kernel-size vectorised products on the H x (W+2) grid of the padded plane (a stride-2
        conv is computed at stride 1 and subsampled); per output channel three pairwise maxima (2x2 max
        pool), the product by new_gamma, one truncation, the ReLU and the average pool's truncation."""
        o, i, kh, kw = node.params["weight"].shape
        a, k, f = node.attrs, fx.total_bits, fx.frac_bits
        exact = fx.protocol.exact
        conv_grid, value_grid, out_grid, _ = cls.grids(node)
        steps = [Products("convolution taps", o * i, kh * kw * conv_grid)]
        if a.get("pre_pool"):  # max(max(max(t0, t1), t2), t3): three comparisons in sequence
            steps += [Comparison("accumulator", 2 * k, 3 * o, value_grid, operand="difference"),
                      Products("max pool selection", 3 * o, value_grid)]
        if a.get("affine", True):
            steps += [Products("x new_gamma", o, value_grid), Truncation("scaled", 2 * k, 2 * f, exact, o, value_grid)]
        else:
            steps.append(Truncation("accumulator", 2 * k, f, exact, o, value_grid))
        if a.get("relu", True):
            steps += [Comparison("truncated", k, o, value_grid), Products("ReLU selection", o, value_grid)]
        if a.get("post_pool"):
            steps.append(Truncation("pool_sum", k + 2, 2, exact, o, out_grid))
        return Schedule(steps, stored=[Stage("accumulator", 2 * k - 1), Stage("truncated", fx.value_limit_bits)])

    @classmethod
    def worst_case(cls, node, fx, in_bound):
        q, a = node.qparams, node.attrs
        f = fx.frac_bits
        sums = _weight_abs_sums(node)
        acc = [int(s) * in_bound + abs(int(b)) * 2**f for s, b in zip(sums, q["bias"])]
        out = {"accumulator": max(acc)}
        if a.get("affine", True):
            scaled = [v * abs(int(g)) + abs(int(be)) * 2 ** (2 * f) for v, g, be in zip(acc, q["new_gamma"], q["new_beta"])]
            out["scaled"] = max(scaled)
            truncated = max(scaled) // 2 ** (2 * f) + 1
        else:
            truncated = max(acc) // 2**f + 1
        out["truncated"] = truncated
        if a.get("post_pool"):
            out["pool_sum"] = 4 * truncated
        return out, truncated

    @classmethod
    def error_ulp(cls, node, fx, in_error):
        """The accumulator deviates by at most sum|w_o| * in_error (scale 2^2F); max pooling does not
        amplify; x |new_gamma_o|; a floor by 2^m turns a deviation d into at most ceil(d / 2^m), and a
        probabilistic truncation adds at most 1 (an exact one nothing); ReLU does not amplify; the average
        pool keeps the bound and adds its truncation's rounding."""
        q, a = node.qparams, node.attrs
        f = fx.frac_bits
        schedule = cls.schedule(node, fx)
        sums = _weight_abs_sums(node)
        if a.get("affine", True):
            worst = max(int(s) * abs(int(g)) for s, g in zip(sums, q["new_gamma"])) * in_error
            err = -(-worst // 2 ** (2 * f)) + schedule.truncation("scaled").rounding_ulp
        else:
            err = -(-(int(max(sums)) * in_error) // 2**f) + schedule.truncation("accumulator").rounding_ulp
        return err + schedule.truncation("pool_sum").rounding_ulp if a.get("post_pool") else err

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        """Quantization step x fan-in: each weight, bias, new_gamma, new_beta is off by <= 2^-(F+1);
        the input by in_error; each floor loses < 2^-F; max pooling, ReLU and averaging do not amplify."""
        (in_error,), (in_peak,) = in_errors, in_peaks
        half, step = 2.0 ** -(fx.frac_bits + 1), 2.0 ** -fx.frac_bits
        w = node.params["weight"]
        sums = np.sum(np.abs(w), axis=(1, 2, 3))
        acc_err = sums * in_error + w[0].size * half * (in_peak + in_error) + half
        if node.attrs.get("affine", True):
            acc_peak = sums * in_peak + np.abs(node.params["bias"])
            gamma_q = np.abs(node.qparams["new_gamma"]) / 2.0**fx.frac_bits
            err = float(np.max(gamma_q * acc_err + half * acc_peak + half)) + step
        else:
            err = float(np.max(acc_err)) + step
        return err + step if node.attrs.get("post_pool") else err

    @classmethod
    def grids(cls, node):
        """Vector lengths the program works on: conv grid, grid after stride/max-pool, output grid."""
        c, h, w = node.in_shapes[0]
        a = node.attrs
        conv_grid = h * (w + 2)
        resampled = a.get("stride", 1) == 2 or a.get("pre_pool")
        hv, wv = (h // 2, w // 2) if resampled else (h, w)
        value_grid = hv * (wv + 2) if resampled else conv_grid
        out_columns = wv // 2 + 2 if a.get("out_layout", "padded") == "padded" else wv // 2
        out_grid = (hv // 2) * out_columns if a.get("post_pool") else value_grid
        return conv_grid, value_grid, out_grid, (hv, wv)

    @classmethod
    def template_args(cls, node, fx, layout):
        c, h, w = node.in_shapes[0]
        oc, oh, ow = node.shape
        a = node.attrs
        conv_grid, value_grid, out_grid, (hv, wv) = cls.grids(node)
        schedule = cls.schedule(node, fx)
        target = layout.buffer(node)
        padded = target.layout == "padded"
        if not padded and not a.get("post_pool"):
            raise NotImplementedError(f"{node.name}: only a pooled convolution can feed a dense layer directly")
        out_columns = ow + 2 if padded else ow
        resample = "max" if a.get("pre_pool") else ("stride" if a.get("stride", 1) == 2 else None)
        return {
            "name": layout.ident(node),
            "source": layout.buffer_of_input(node).name,
            "weight": layout.param(node, "weight"),
            "bias": layout.param(node, "bias"),
            "gamma": layout.param(node, "new_gamma"),
            "beta": layout.param(node, "new_beta"),
            "channels_in": c, "height": h, "width": w, "channels_out": oc, "kernel": node.params["weight"].shape[2],
            "conv_grid": conv_grid,
            "resample": resample,
            "resample_rows": hv, "resample_valid": wv, "resample_columns": wv + 2,
            "affine": bool(a.get("affine", True)),
            "relu": bool(a.get("relu", True)),
            "pool": bool(a.get("post_pool")),
            # the protocol numbers, from the declared schedule
            "max_bits": schedule.comparison("accumulator").bit_length if a.get("pre_pool") else None,
            "truncation": schedule.truncation("scaled" if a.get("affine", True) else "accumulator"),
            "relu_bits": schedule.comparison("truncated").bit_length if a.get("relu", True) else None,
            "pool_truncation": schedule.truncation("pool_sum") if a.get("post_pool") else None,
            "pool_rows": oh, "pool_valid": ow, "pool_source_row": wv + 2,
            "out_columns": out_columns,
            "out_grid": oh * out_columns,
            "mask": padded,
            "target": target.name,
            "target_offset": ow + 3 if padded else 0,
            "target_channel_stride": (oh + 2) * (ow + 2) if padded else oh * ow,
            "target_row_stride": ow + 2 if padded else ow,
            "out_height": oh, "out_width": ow,
        }
