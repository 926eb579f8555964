"""Per-layer comparison of the fixed-point reference with float oracles, accumulated over batches."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..fixedpoint import decode


def _abs_difference(a: torch.Tensor, b: torch.Tensor, scratch: torch.Tensor) -> tuple[float, float]:
    """(max, sum) of |a - b| computed in float64 in ``scratch`` (same shape, overwritten): no temporaries,
    each step one threaded pass."""
    if scratch.numel() == 0:
        return 0.0, 0.0
    torch.sub(a, b, out=scratch)
    scratch.abs_()
    return float(scratch.max()), float(scratch.sum())


def _memory_order(values: np.ndarray) -> tuple[int, ...]:
    """The permutation that reads ``values`` in memory order: NCHW -> NHWC for an NCHW array over
    channels-last memory (the reference's and PyTorch's layer outputs), else the identity. The per-layer
    statistics (max, sum) do not depend on the order."""
    if values.ndim == 4 and np.transpose(values, (0, 2, 3, 1)).flags["C_CONTIGUOUS"]:
        return (0, 2, 3, 1)
    return tuple(range(values.ndim))


def _peak(values: torch.Tensor) -> float:
    """Largest |value| of a float tensor (0 when empty)."""
    if values.numel() == 0:
        return 0.0
    low, high = torch.aminmax(values)
    return float(max(high, -low))


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
    scratch: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for node in self.graph.nodes:
            self.stats[node.name] = LayerStats(node.name, node.op, node.origin[-1] if node.origin else "input")

    def add(self, fixed: dict, torch_out: dict, onnx_out: dict | None, x_real: np.ndarray) -> None:
        """One batch: fixed (node -> integers at 2^F), torch_out / onnx_out (node -> float outputs of the
        same images, any float dtype), x_real the real inputs."""
        for node in self.graph.nodes:
            s = self.stats[node.name]
            values = fixed[node.name]
            order = _memory_order(values)
            ref = self._decoded(values, order)
            flt = self._float64("float", x_real if node.op == "input" else torch_out[node.name], values.shape, order)
            scratch = self._scratch("difference", ref.shape)
            err_max, err_sum = _abs_difference(ref, flt, scratch)
            s.max_abs_err = max(s.max_abs_err, err_max)
            s.sum_abs_err += err_sum
            s.count += ref.numel()
            s.peak = max(s.peak, _peak(flt))
            if onnx_out is not None and node.name in onnx_out:
                onnx = self._float64("onnx", onnx_out[node.name], values.shape, order)
                s.onnx_max_abs_err = max(s.onnx_max_abs_err or 0.0, _abs_difference(ref, onnx, scratch)[0])
                s.onnx_vs_torch = max(s.onnx_vs_torch or 0.0, _abs_difference(onnx, flt, scratch)[0])

    def _decoded(self, values: np.ndarray, order: tuple[int, ...]) -> torch.Tensor:
        """values / 2^F as a float64 tensor (fixedpoint.decode), its dimensions permuted by ``order``
        (_memory_order) and C-contiguous; int64 values are decoded into a kept work tensor (valid until the
        next layer's)."""
        if values.dtype != np.int64:
            return torch.from_numpy(np.ascontiguousarray(decode(values, self.fx.frac_bits).transpose(order)))
        source = torch.from_numpy(values).permute(order)
        out = self._scratch("decoded", tuple(source.shape))
        out.copy_(source)  # exact: every value < 2^53
        return out.mul_(2.0**-self.fx.frac_bits)  # equal to decode: both scale by a power of two

    def _float64(self, purpose: str, values: np.ndarray, shape: tuple, order: tuple[int, ...]) -> torch.Tensor:
        """``values`` (any float dtype, any layout, the size of ``shape``, the reference's logical shape) as a
        float64 tensor of that shape permuted by ``order``, in a kept work tensor: the differences then run on
        one dtype (a mixed-dtype subtraction is ~3x slower), reading both operands in memory order."""
        source = torch.from_numpy(np.asarray(values)).reshape(shape).permute(order)
        out = self._scratch(purpose, tuple(source.shape))
        out.copy_(source)
        return out

    def _scratch(self, purpose: str, shape: tuple) -> torch.Tensor:
        """A float64 work tensor of ``shape``, one per purpose for every layer, kept across batches (no fresh
        pages per batch): a flat buffer grown to the largest layer, valid until the next take."""
        size = int(np.prod(shape))
        flat = self.scratch.get(purpose)
        if flat is None or flat.numel() < size:
            flat = self.scratch[purpose] = torch.empty(size, dtype=torch.float64)
        return flat[:size].view(shape)

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
