"""Per-layer comparison of the fixed-point reference with float oracles, accumulated over batches."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..compiled import kernel, over_slices, slices
from ..fixedpoint import decode


@kernel
def _compare(first, stop, reference, scale, values, found):
    """Over [first, stop) of two flat arrays: found[0] = max |reference * scale - values|, found[1] the sum
    of those, found[2] = max |values|, each difference computed in float64 (a reference integer below
    2^53 times a power of two is exact, as is a float32 value widened)."""
    largest, total, peak = 0.0, 0.0, 0.0
    for i in range(first, stop):
        value = np.float64(values[i])
        difference = abs(np.float64(reference[i]) * scale - value)
        largest = max(largest, difference)
        total += difference
        peak = max(peak, abs(value))
    found[0], found[1], found[2] = largest, total, peak


def _flat(values: np.ndarray, shape: tuple, order: tuple[int, ...]) -> np.ndarray:
    """``values`` (the size of ``shape``) in the logical order of ``shape`` permuted by ``order``, flat: a
    view where that is its memory order, else a copy."""
    return np.ravel(np.transpose(np.asarray(values).reshape(shape), order))


def _differences(reference: np.ndarray, scale: float, values: np.ndarray) -> tuple[float, float, float]:
    """(max, sum) of |reference * scale - values| and max |values| over two flat arrays, in threads."""
    found = np.zeros((slices(), 3))
    over_slices(_compare, len(reference), reference, scale, values, per_thread=(found,))
    return float(found[:, 0].max()), float(found[:, 1].sum()), float(found[:, 2].max())


def _memory_order(values: np.ndarray) -> tuple[int, ...]:
    """The permutation that reads ``values`` in memory order: NCHW -> NHWC for an NCHW array over
    channels-last memory (the reference's and PyTorch's layer outputs), else the identity. The per-layer
    statistics (max, sum) do not depend on the order."""
    if values.ndim == 4 and np.transpose(values, (0, 2, 3, 1)).flags["C_CONTIGUOUS"]:
        return (0, 2, 3, 1)
    return tuple(range(values.ndim))


@dataclass
class LayerStats:
    name: str
    op: str
    origin: str
    max_abs_err: float = 0.0  # vs the PyTorch float oracle (float32 for a state_dict), real units
    sum_abs_err: float = 0.0
    count: int = 0
    peak: float = 0.0  # largest |float output|
    onnx_max_abs_err: float | None = None  # vs onnxruntime, real units (None: layer not exposed in ONNX)
    onnx_vs_torch: float | None = None


@dataclass
class LayerTable:
    graph: object
    fx: object
    stats: dict[str, LayerStats] = field(default_factory=dict)

    def __post_init__(self):
        for node in self.graph.nodes:
            self.stats[node.name] = LayerStats(node.name, node.op, node.origin[-1] if node.origin else "input")

    def add(self, fixed: dict, torch_out: dict, onnx_out: dict | None, x_real: np.ndarray) -> None:
        """One batch: fixed (node -> integers at 2^F), torch_out / onnx_out (node -> float outputs of the
        same images, any float dtype), x_real the real inputs. Every pair is read in the reference's memory
        order, in one compiled pass."""
        ulp = 2.0**-self.fx.frac_bits
        for node in self.graph.nodes:
            s = self.stats[node.name]
            values = fixed[node.name]
            shape, order = values.shape, _memory_order(values)
            ref, scale = (_flat(values, shape, order), ulp) if values.dtype == np.int64 else \
                (_flat(decode(values, self.fx.frac_bits), shape, order), 1.0)  # beyond int64: decoded first
            flt = _flat(x_real if node.op == "input" else torch_out[node.name], shape, order)
            err_max, err_sum, peak = _differences(ref, scale, flt)
            s.max_abs_err = max(s.max_abs_err, err_max)
            s.sum_abs_err += err_sum
            s.count += ref.size
            s.peak = max(s.peak, peak)
            if onnx_out is not None and node.name in onnx_out:
                onnx = _flat(onnx_out[node.name], shape, order)
                s.onnx_max_abs_err = max(s.onnx_max_abs_err or 0.0, _differences(ref, scale, onnx)[0])
                s.onnx_vs_torch = max(s.onnx_vs_torch or 0.0, _differences(onnx, 1.0, flt)[0])

    def rows(self) -> list[dict]:
        """Each layer with its derived tolerance (from the measured deviation of its input) and the
        bound on |MPC - reference| from the probabilistic truncations (propagated from the input)."""
        fx = self.fx
        ulp = 2.0 ** -fx.frac_bits
        rows = []
        mpc_bound: dict[str, int] = {}
        for node in self.graph.nodes:
            s = self.stats[node.name]
            if node.op == "input":
                errs, onnx_errs, peaks, in_bounds = [0.0], [0.0], [1.0], [0]
            else:
                sources = [self.stats[i] for i in node.inputs]
                errs = [s_.max_abs_err for s_ in sources]
                # an input not exposed in the ONNX graph: its deviation from the float model is the torch one
                onnx_errs = [s_.max_abs_err if s_.onnx_max_abs_err is None else s_.onnx_max_abs_err for s_ in sources]
                peaks = [s_.peak for s_ in sources]
                in_bounds = [mpc_bound[i] for i in node.inputs]
            tolerance = node.spec.float_tolerance(node, fx, errs, peaks)
            onnx_tolerance = node.spec.float_tolerance(node, fx, onnx_errs, peaks)
            mpc_bound[node.name] = node.spec.error_ulp(node, fx, *in_bounds)
            ok = s.max_abs_err <= tolerance and (s.onnx_max_abs_err is None or s.onnx_max_abs_err <= onnx_tolerance)
            rows.append({
                "name": node.name,
                "op": node.op,
                "torch_module": s.origin,
                "max_abs_err": s.max_abs_err,
                "mean_abs_err": s.sum_abs_err / max(s.count, 1),
                "max_ulp_err": s.max_abs_err / ulp,
                "tolerance": tolerance,
                "tolerance_ulp": tolerance / ulp,
                "onnx_max_abs_err": s.onnx_max_abs_err,
                "onnx_tolerance": onnx_tolerance,
                "onnx_vs_torch": s.onnx_vs_torch,
                "bound_ulp": mpc_bound[node.name],
                "peak": s.peak,
                "ok": bool(ok),
            })
        return rows
