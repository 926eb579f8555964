"""Run the lowered graph on a batch: the bit-exact fixed-point reference and the float reference."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import Graph
from ..fixedpoint import FixedSpec, max_abs, truncate


@dataclass
class Trace:
    """Largest |value| seen per (node, stage), to compare with each stage's bit limit; with ``rng`` the
    kernels simulate each probabilistic truncation (TruncPr) instead of the floor (exact ones floor)."""

    peaks: dict[tuple[str, str], int] = field(default_factory=dict)
    rng: np.random.Generator | None = None

    def truncate(self, v: np.ndarray, step) -> np.ndarray:
        """The declared truncation ``step`` (an ops.protocol.Truncation) applied to v."""
        return truncate(v, step.reference_shift, None if step.exact else self.rng)

    def stage_peaks(self, graph: Graph, fx: FixedSpec) -> list:
        """(node name, Stage, largest |value| seen) for every stage of every node: what build's
        calibration and verify's overflow check compare with each stage's bit limit."""
        return [(node.name, stage, self.peaks.get((node.name, stage.name), 0))
                for node in graph.nodes for stage in node.spec.stages(node, fx)]

    def record(self, node, stage: str, values: np.ndarray) -> None:
        key = (node.name, stage)
        self.peaks[key] = max(self.peaks.get(key, 0), max_abs(values))


def run_fixed(graph: Graph, fx: FixedSpec, x_int: np.ndarray, trace: Trace | None = None) -> dict[str, np.ndarray]:
    """Integer outputs (scale 2^F) of every node for a batch of encoded inputs (N, C, H, W)."""
    trace = trace if trace is not None else Trace()
    outputs: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        xs = [x_int] if node.op == "input" else [outputs[i] for i in node.inputs]
        outputs[node.name] = node.spec.ref_fixed(node, fx, trace, *xs)
    return outputs


def run_float(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Float outputs of every node for a batch of real inputs (N, C, H, W): float64 for a graph with float64
    parameters and inputs, float32 for one whose parameters and inputs are float32."""
    outputs: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        xs = [x] if node.op == "input" else [outputs[i] for i in node.inputs]
        outputs[node.name] = node.spec.ref_float(node, *xs)
    return outputs

