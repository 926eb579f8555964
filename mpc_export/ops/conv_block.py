"""conv_block: k x k convolution (k odd: 1, 3, 5, 7; zero padding 0 to k // 2), stride 1 or 2, + bias, optional 2x2 max pool, optional folded
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

import threading

import numpy as np
import torch
import torch.nn.functional as F

from ..compiled import over_slices, running_extremes
from ..fixedpoint import fits_int64, max_abs, to_exact
from . import _compiled
from . import _exact as exact
from ._kernels import conv2d_float, pool2x2_max, pool2x2_sum, window_out
from .base import Op
from .protocol import Comparison, Floor, Hold, Products, Schedule, Stage, Truncation, Weighted, pairwise_maxima


def _padding(node) -> int:
    """Zero padding on every side (0 .. k // 2); a block without the attribute pads k // 2 ("same")."""
    return int(node.attrs.get("padding", node.params["weight"].shape[2] // 2))


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
        assert i == c and kh == kw and kh % 2 == 1 and 0 <= _padding(node) <= kh // 2
        s = node.attrs.get("stride", 1)
        h, w = window_out(h, kh, s, _padding(node)), window_out(w, kw, s, _padding(node))
        if node.attrs.get("pre_pool"):
            h, w = h // 2, w // 2
        if node.attrs.get("post_pool"):
            h, w = h // 2, w // 2
        return (o, h, w)

    @classmethod
    def ref_float(cls, node, x):
        """In the parameters' dtype (float64, or float32 for verify's quantized-weights stage), on torch
        tensors: every step one threaded pass, the same values as the numpy formulas (a 2x2 average is the
        window's sum / 4, both exact scalings by powers of two)."""
        p, a = node.params, node.attrs
        y = torch.from_numpy(conv2d_float(x, p["weight"], p["bias"], a.get("stride", 1), _padding(node)))
        if a.get("pre_pool"):
            y = F.max_pool2d(y, 2)
        if a.get("affine", True):
            y = y.mul_(torch.from_numpy(p["new_gamma"]).to(y.dtype)[:, None, None])
            y = y.add_(torch.from_numpy(p["new_beta"]).to(y.dtype)[:, None, None])
        if a.get("relu", True):
            y = y.clamp_min_(0.0)
        return (F.avg_pool2d(y, 2) if a.get("post_pool") else y).numpy()

    @classmethod
    def macs(cls, node, graph):
        o, i, kh, kw = node.params["weight"].shape
        c, h, w = node.in_shapes[0]
        s = node.attrs.get("stride", 1)
        return int(o * i * kh * kw * window_out(h, kh, s, _padding(node)) * window_out(w, kw, s, _padding(node)))

    @classmethod
    def ref_fixed(cls, node, fx, trace, x):
        """The schedule in the module docstring, exact: in int64 (int8 GEMMs for the convolution when their
        bound holds, then one compiled pass per image) when a bound from the weights and the actual input
        proves every intermediate < 2^62 and every truncation is a floor, else with Python ints (also where
        the trace simulates TruncPr). Returns NCHW integers at scale 2^F."""
        x_extremes = _extremes(torch.from_numpy(x)) if x.dtype == np.int64 else None
        x_bound = max(-x_extremes[0], x_extremes[1]) if x_extremes else max_abs(x)
        bound = max(cls.worst_case(node, fx, x_bound)[0].values())  # every intermediate, for this input
        schedule = cls.schedule(node, fx)
        floors = trace.rng is None or all(step.exact for step in schedule.steps if isinstance(step, Truncation))  # no simulated TruncPr
        if fits_int64(bound) and floors:
            return _ref_fixed_int64(schedule, node, fx, trace, x, x_extremes or (-x_bound, x_bound))
        return _ref_fixed_python_ints(schedule, node, fx, trace, x, bound)

    @classmethod
    def winograd(cls, node, fx) -> bool:
        """F(2x2, 3x3) applies to a 3x3, stride-1, pad-1 convolution whose output map has even sides."""
        c, h, w = node.in_shapes[0]
        return (fx.protocol.convolution == "winograd" and node.params["weight"].shape[2] == 3 and _padding(node) == 1
                and node.attrs.get("stride", 1) == 1 and h % 2 == 0 and w % 2 == 0)

    @classmethod
    def mode(cls, node, fx) -> str:
        """How the program convolves: "winograd", "direct" (every tap of every kernel) or "sparse" (public
        sparsity: one product per non-zero weight, its position read from the public pattern). With public
        sparsity a layer is sparse only where that saves products: fewer non-zero weights than the direct
        program's o * i * k * k products per output, or than Winograd's 4 * o * i (16 products per 2x2
        tile) where Winograd applies. A layer without zeros keeps its program (and its rounds)."""
        winograd = cls.winograd(node, fx)
        if fx.protocol.public_sparsity:
            o, i, kh, kw = node.params["weight"].shape
            if _nonzero_taps(node) < (4 * o * i if winograd else o * i * kh * kw):
                return "sparse"
        return "winograd" if winograd else "direct"

    @classmethod
    def public_pattern(cls, node, fx):
        """(o, c, t) of every non-zero quantized weight w[o, c, kh, kw], t = kh * k + kw, in OIHW order,
        flattened (3 integers per non-zero weight); None unless the layer is sparse."""
        if cls.mode(node, fx) != "sparse":
            return None
        weight = node.qparams["weight"]
        o, c, kh, kw = np.nonzero(weight)
        return np.stack([o, c, kh * weight.shape[3] + kw], axis=1).astype(np.int64).ravel()

    @classmethod
    def schedule(cls, node, fx):
        """One output channel per run-time iteration (see the template), on dense grids (no padding
        columns): per (output, input) channel pair one round of vectorised products, either a tap per
        kernel element on the (strided) output grid, or Winograd's 16 per 2x2 output tile; per output
        channel three pairwise maxima (2x2 max pool), the product by new_gamma, one truncation, the ReLU and
        the average pool's truncation. A Winograd program holds 4x the accumulator and scaled values
        (scale_bits 2): its truncation and comparisons get 2 more bits, and the shift 2 more. With public
        weights the products by a weight and by new_gamma are local: no secret products. With public sparsity
        (mode "sparse") one run-time iteration per non-zero weight multiplies it by its tap of the input
        channel, on the conv grid: products by a zero weight are skipped."""
        o, i, kh, kw = node.params["weight"].shape
        a, k, f = node.attrs, fx.total_bits, fx.frac_bits
        exact = fx.protocol.exact
        g = cls.grids(node)
        mode = cls.mode(node, fx)
        extra = 2 if mode == "winograd" else 0
        secret_weights = not fx.protocol.public_weights
        if not secret_weights:
            steps = []
        elif mode == "winograd":
            steps = [Products("Winograd products", o * i, 16 * g["conv_grid"] // 4, instructions=16)]  # one per tile position
        elif mode == "sparse":  # one run-time iteration per non-zero weight (the public pattern's entries)
            steps = [Products("non-zero weight taps", _nonzero_taps(node), g["conv_grid"])]
        else:
            steps = [Products("convolution taps", o * i, kh * kw * g["conv_grid"], instructions=kh * kw)]  # one per tap
        if a.get("pre_pool"):  # max(max(max(t0, t1), t2), t3): three comparisons in sequence
            steps += pairwise_maxima("accumulator", 2 * k + extra, 3 * o, [g["value_grid"]], scale_bits=extra)
        if a.get("affine", True):
            steps += [Products("x new_gamma", o, g["value_grid"])] if secret_weights else []
            steps += [Truncation("scaled", 2 * k + extra, 2 * f + extra, exact, o, g["value_grid"], scale_bits=extra)]
        else:
            steps.append(Truncation("accumulator", 2 * k + extra, f + extra, exact, o, g["value_grid"], scale_bits=extra))
        if a.get("relu", True):
            steps += [Comparison("truncated", k, o, g["value_grid"]), Products("ReLU selection", o, g["value_grid"])]
        if a.get("post_pool"):
            steps.append(Truncation("pool_sum", k + 2, 2, exact, o, g["out_grid"]))
        return Schedule(steps, stored=[Stage("accumulator", 2 * k - 1), Stage("truncated", fx.value_limit_bits)],
                        flow=cls.flow(node, fx))

    @classmethod
    def flow(cls, node, fx) -> list:
        """How each stage is formed (per output channel), for the bounds; the max pool and the ReLU do not
        grow a value, and the 2x2 average pool sums 4."""
        a, f = node.attrs, fx.frac_bits
        flow = [Weighted("accumulator", gain="weight", offset="bias", offset_shift=f)]
        if a.get("affine", True):
            flow += [Weighted("scaled", gain="new_gamma", offset="new_beta", offset_shift=2 * f), Floor("scaled")]
        else:
            flow.append(Floor("accumulator"))
        flow.append(Hold("truncated"))
        if a.get("post_pool"):
            flow += [Weighted("pool_sum", gain=4), Floor("pool_sum")]
        return flow

    @classmethod
    def bound_terms(cls, node, fx):
        """sum |w_q| per output channel, and |bias_q|, |new_gamma_q|, |new_beta_q|."""
        q = node.qparams
        return {"weight": _weight_abs_sums(node), **{name: np.abs(q[name].astype(object)) for name in ("bias", "new_gamma", "new_beta")}}

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
    def grids(cls, node) -> dict:
        """The dense grids the program works on (row-major, no padding columns): the convolution's output
        (conv_*), after the 2x2 max pool (value_*), after the 2x2 average pool (out_*)."""
        c, h, w = node.in_shapes[0]
        a = node.attrs
        k, s = node.params["weight"].shape[2], a.get("stride", 1)
        ho, wo = window_out(h, k, s, _padding(node)), window_out(w, k, s, _padding(node))
        hv, wv = (ho // 2, wo // 2) if a.get("pre_pool") else (ho, wo)
        oh, ow = (hv // 2, wv // 2) if a.get("post_pool") else (hv, wv)
        return {"conv_rows": ho, "conv_columns": wo, "conv_grid": ho * wo, "value_rows": hv, "value_columns": wv,
                "value_grid": hv * wv, "out_rows": oh, "out_columns": ow, "out_grid": oh * ow}

    @classmethod
    def template_args(cls, node, fx, layout):
        """Sizes, the address tables (each: rows x columns entries base + row_step*y*source_row +
        column_step*x, see the template's offset_table) and the schedule's protocol numbers."""
        c, h, w = node.in_shapes[0]
        oc = node.shape[0]
        a = node.attrs
        g = cls.grids(node)
        schedule = cls.schedule(node, fx)
        mode = cls.mode(node, fx)
        target = layout.buffer(node)
        padded = target.layout == "padded"
        kernel, stride = node.params["weight"].shape[2], a.get("stride", 1)
        pad, row = _padding(node), w + 2
        ho, wo, hv, wv, oh, ow = g["conv_rows"], g["conv_columns"], g["value_rows"], g["value_columns"], g["out_rows"], g["out_columns"]
        quads = [(0, 0), (0, 1), (1, 0), (1, 1)]
        tables = {}
        source, in_plane, widen = layout.buffer_of_input(node).name, (h + 2) * row, None
        if mode == "winograd":
            tables["tile"] = [(ho // 2, wo // 2, 2, 2, i * row + j, row) for i in range(4) for j in range(4)]
            tables["scatter"] = [(ho // 2, wo // 2, 2, 2, dy * wo + dx, wo) for dy, dx in quads]
            tables["weight_rows"] = [(c, 1, 9, 0, 0, 1)]
        else:
            # activations keep a 1-value zero border; a wider padding reads a copy with a pad-wide border
            border, tap_row = 1, row
            if pad > 1:
                border, tap_row = pad, w + 2 * pad
                widen = {"buffer": f"{layout.ident(node)}_WIDE", "source": source, "source_plane": in_plane,
                         "plane": (h + 2 * pad) * tap_row, "count": h * w}
                tables["widen_gather"] = [(h, w, 1, 1, row + 1, row)]
                tables["widen_scatter"] = [(h, w, 1, 1, pad * tap_row + pad, tap_row)]
                source, in_plane = widen["buffer"], widen["plane"]
            tables["tap"] = [(ho, wo, stride, stride, (kh - pad + border) * tap_row + (kw - pad + border), tap_row)
                             for kh in range(kernel) for kw in range(kernel)]
        if a.get("pre_pool"):
            tables["max_pool"] = [(hv, wv, 2, 2, dy * wo + dx, wo) for dy, dx in quads]
        if a.get("post_pool"):
            tables["avg_pool"] = [(oh, ow, 2, 2, dy * wv + dx, wv) for dy, dx in quads]
        if padded:
            tables["store"] = [(oh, ow, 1, 1, ow + 3, ow + 2)]
        return {
            "name": layout.ident(node),
            "source": source,
            "widen": widen,
            "weight": layout.param(node, "weight"),
            "bias": layout.param(node, "bias"),
            "gamma": layout.param(node, "new_gamma"),
            "beta": layout.param(node, "new_beta"),
            "channels_in": c, "height": h, "width": w, "channels_out": oc, "kernel": kernel, "stride": stride,
            "in_plane": in_plane, "padding": pad,
            "mode": mode,
            "tiles": g["conv_grid"] // 4 if mode == "winograd" else 0,
            # sparse: where this layer's (o, c, t) triples lie in the pattern buffer (buffer, first, count)
            "pattern": layout.pattern(node) if mode == "sparse" else None,
            **g,
            "tables": tables,
            "affine": bool(a.get("affine", True)),
            # the protocol numbers, from the declared schedule
            "scale_bits": schedule.truncation("scaled" if a.get("affine", True) else "accumulator").scale_bits,
            "max_bits": schedule.comparison("accumulator").bit_length if a.get("pre_pool") else None,
            "truncation": schedule.truncation("scaled" if a.get("affine", True) else "accumulator"),
            "relu_bits": schedule.comparison("truncated").bit_length if a.get("relu", True) else None,
            "pool_truncation": schedule.truncation("pool_sum") if a.get("post_pool") else None,
            "padded": padded,
            "target": target.name,
            "target_offset": ow + 3 if padded else 0,
            "target_channel_stride": (oh + 2) * (ow + 2) if padded else oh * ow,
            "target_row_stride": ow + 2 if padded else ow,
            "out_height": oh, "out_width": ow,
        }


def _nonzero_taps(node) -> int:
    """Non-zero quantized weights of the layer (the sparse program's products per conv grid)."""
    return int(np.count_nonzero(node.qparams["weight"]))


def _weight_digits(node) -> list:
    """The quantized weight's int8 GEMM operands (_exact.weight_digit_matrices), cached per weight value."""
    weight = node.qparams["weight"]
    cached = node.attrs.get("_weight_digits")
    if cached is None or not np.array_equal(cached[0], weight):
        cached = (weight.copy(), exact.weight_digit_matrices(weight))
        node.attrs["_weight_digits"] = cached
    return cached[1]


_SCRATCH = threading.local()  # per thread: .buffers, the int8 convolution's work tensors, reused batch after batch


def _scratch() -> exact.ScratchBuffers:
    """This thread's work buffers: two threads running the reference at once never share one."""
    buffers = getattr(_SCRATCH, "buffers", None)
    if buffers is None:
        buffers = _SCRATCH.buffers = exact.ScratchBuffers()
    return buffers


def _input_shift(x_extremes: tuple[int, int]) -> tuple[int, int]:
    """(shift, bound on |x - shift| and |shift|) for the int8 convolution of x with (min, max) = x_extremes:
    the centre of x's range and 0 (the padding) when that needs fewer balanced digits than x itself (ReLU
    outputs are non-negative: centring halves their range), else (0, max |x|)."""
    low, high = x_extremes
    x_bound = max(-low, high)
    shift, shifted_bound = exact.centre(min(low, 0), max(high, 0))
    if exact.balanced_digit_count(shifted_bound) < exact.balanced_digit_count(x_bound):
        return shift, shifted_bound
    return 0, x_bound


def _accumulator_terms(schedule, node, x: np.ndarray, x_extremes: tuple[int, int]) -> tuple[tuple, np.ndarray]:
    """(terms, offset): the accumulator sum(w * x) + bias * 2^F (scale 2^2F) of output channel o at row r
    (rows N * Ho * Wo in NHW order) is sum_k terms[k][r, o] * 256^k + offset[o], from NCHW integer x (any
    memory layout) with (min, max) = x_extremes; the caller has proven every value < 2^62. terms are the
    int8 GEMMs' int32 terms (exact.conv2d_int8, living in this thread's scratch buffers until the next
    call) when their bound holds (exact.int8_conv_is_exact, on x shifted to its centre when that saves a
    digit: the shift comes back as shift * sum(w_o) in the offset) and the batch is big enough for
    torch._int_mm, else one int64 term from the float64 / limb convolution of _exact."""
    weight, a = node.qparams["weight"], node.attrs
    out_channels, channels, kernel, _ = weight.shape
    stride, padding = a.get("stride", 1), _padding(node)
    rows = x.shape[0] * window_out(x.shape[2], kernel, stride, padding) * window_out(x.shape[3], kernel, stride, padding)
    patch_size = kernel * kernel * exact.padded_channels(channels)
    offset = node.qparams["bias"].astype(np.int64) * 2 ** schedule.alignment("accumulator")  # per output channel, scale 2^2F
    if rows >= exact.INT_MM_MIN_ROWS and exact.int8_conv_is_exact(max(-x_extremes[0], x_extremes[1]), max_abs(weight), patch_size):
        shift, shifted_bound = _input_shift(x_extremes)
        terms = exact.conv2d_int8(x, shifted_bound, _weight_digits(node), kernel, padding, stride, shift=shift, scratch=_scratch())
        return tuple(term.numpy() for term in terms), offset + shift * np.sum(weight.astype(np.int64), axis=(1, 2, 3))
    acc = exact.conv2d(x, weight, padding=padding, stride=stride).astype(np.int64)  # NCHW
    return (np.ascontiguousarray(acc.transpose(0, 2, 3, 1)).reshape(rows, out_channels),), offset


def _affine_extremes(low: np.ndarray, high: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> tuple[int, int] | None:
    """(min, max) over channels of v * scale[o] + offset[o] for v in channel o's [low[o], high[o]]: a
    monotone map per channel takes its extremes to the ends of the image (exact, Python ints); None when
    no value was seen (low > high)."""
    ends = [int(a) * int(g) + int(b) for lo, hi, g, b in zip(low, high, scale, offset) if lo <= hi for a in (lo, hi)]
    return (min(ends), max(ends)) if ends else None


def _extremes(values: torch.Tensor) -> tuple[int, int] | None:
    """(min, max) of an integer tensor as Python ints; None when it is empty."""
    if values.numel() == 0:
        return None
    if values.dim() == 4 and values.permute(0, 2, 3, 1).is_contiguous():  # NCHW over NHWC memory: read in order
        values = values.permute(0, 2, 3, 1)
    low, high = torch.aminmax(values)
    return int(low), int(high)


def _record_extremes(trace, node, stage: str, extremes: tuple[int, int] | None) -> None:
    """trace.record of a tensor through its (min, max) (the trace keeps the largest |value|)."""
    trace.record(node, stage, np.array(extremes if extremes is not None else [], dtype=np.int64))


def _ref_fixed_int64(schedule, node, fx, trace, x: np.ndarray, x_extremes: tuple[int, int]) -> np.ndarray:
    """ConvBlock.ref_fixed in int64, every intermediate proven < 2^62 and every truncation a floor: the
    int8 GEMM terms, then _compiled.conv_tail's one pass per image (recombination, max pool, affine step
    with the bias folded into one offset per channel, floor, ReLU, average pool). The stages' extremes
    come from its per-channel extremes: each step is monotone per channel. Returns an NCHW array over
    NHWC memory (a strided view: the next convolution reads it without a transpose)."""
    q, a = node.qparams, node.attrs
    affine, post_pool = a.get("affine", True), bool(a.get("post_pool"))
    terms, offset = _accumulator_terms(schedule, node, x, x_extremes)
    gamma = q["new_gamma"].astype(np.int64) if affine else np.ones_like(offset)
    scaled_offset = offset * gamma + (q["new_beta"].astype(np.int64) * 2 ** schedule.alignment("scaled") if affine else 0)
    truncation = schedule.truncation("scaled" if affine else "accumulator")
    out_channels, out_height, out_width = node.shape
    n, kernel, stride = x.shape[0], q["weight"].shape[2], a.get("stride", 1)
    height, width = window_out(x.shape[2], kernel, stride, _padding(node)), window_out(x.shape[3], kernel, stride, _padding(node))
    out = np.empty((n * out_height * out_width, out_channels), dtype=np.int64)
    found = [array for _ in range(3) for array in running_extremes(out_channels)]  # (low, high) x 3 stages
    over_slices(_compiled.conv_tail, n, terms, height, width, bool(a.get("pre_pool")), post_pool, gamma, scaled_offset,
                truncation.reference_shift, bool(a.get("relu", True)),
                schedule.truncation("pool_sum").reference_shift if post_pool else 0, out, per_thread=found)
    acc_low, acc_high, pooled_low, pooled_high, sum_low, sum_high = (array.min(0) if i % 2 == 0 else array.max(0) for i, array in enumerate(found))
    _record_extremes(trace, node, "accumulator", _affine_extremes(acc_low, acc_high, np.ones_like(offset), offset))
    scaled = _affine_extremes(pooled_low, pooled_high, gamma, scaled_offset)
    if affine:
        _record_extremes(trace, node, "scaled", scaled)
    truncated = None if scaled is None else (scaled[0] >> truncation.reference_shift, scaled[1] >> truncation.reference_shift)
    _record_extremes(trace, node, "truncated", truncated)  # a floor is monotone
    if post_pool:
        _record_extremes(trace, node, "pool_sum", _affine_extremes(sum_low, sum_high, np.ones_like(offset), np.zeros_like(offset)))
    return out.reshape(n, out_height, out_width, out_channels).transpose(0, 3, 1, 2)


def _ref_fixed_python_ints(schedule, node, fx, trace, x: np.ndarray, bound: int) -> np.ndarray:
    """ConvBlock.ref_fixed with Python ints (object arrays) where int64 could overflow: exact, slow."""
    q, a = node.qparams, node.attrs
    acc = exact.conv2d(x, q["weight"], padding=_padding(node), stride=a.get("stride", 1))
    acc = to_exact(acc, bound) + to_exact(q["bias"], bound)[None, :, None, None] * 2 ** schedule.alignment("accumulator")
    trace.record(node, "accumulator", acc)
    if a.get("pre_pool"):
        acc = pool2x2_max(acc)
    if a.get("affine", True):
        gamma, beta = to_exact(q["new_gamma"], bound), to_exact(q["new_beta"], bound) * 2 ** schedule.alignment("scaled")
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
    return y.astype(np.int64) if y.dtype == object and max_abs(y) < 2**62 else y
