"""Quantize the lowered graph's parameters and check the bit budget.

Every parameter tensor becomes round(x * 2^F) (``encode``), scale 2^F. Refusals (UserError):
  - a parameter with |v| >= 2^(K-1) (it cannot even be stored);
  - an intermediate that breaks the field, |v| * 2^kappa >= 2^(prime_bits - 1), even when every input
    of its layer is within the K-bit budget (a local worst case: this can never work).
The worst case propagated through the whole network from the input range (interval bounds) is reported
per stage; where it exceeds the K-bit budget only a calibration (the inputs being built, or verify's
data-set mode) can tell whether real data fits, so that is a warning, not a refusal.
A worst case above the K-bit budget whose calibrated values fit is allowed and reported with headroom.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..ir import Graph
from ..fixedpoint import FixedSpec, bits_of, encode, max_abs


@dataclass
class StageBudget:
    node: str
    stage: str
    limit_bits: int
    worst_case: int
    calibrated: int | None = None

    @property
    def worst_headroom_bits(self) -> float:
        return self.limit_bits - bits_of(self.worst_case)

    @property
    def calibrated_headroom_bits(self) -> float | None:
        return None if self.calibrated is None else self.limit_bits - bits_of(self.calibrated)

    def as_dict(self) -> dict:
        return {
            "node": self.node,
            "stage": self.stage,
            "limit_bits": self.limit_bits,
            "worst_case_bits": round(bits_of(self.worst_case), 2),
            "worst_case_headroom_bits": round(self.worst_headroom_bits, 2),
            "calibrated_bits": None if self.calibrated is None else round(bits_of(self.calibrated), 2),
            "calibrated_headroom_bits": None if self.calibrated is None else round(self.calibrated_headroom_bits, 2),
        }


@dataclass
class Budget:
    stages: list[StageBudget] = field(default_factory=list)
    tensors: list[dict] = field(default_factory=list)

    def stage(self, node: str, stage: str) -> StageBudget:
        return next(s for s in self.stages if s.node == node and s.stage == stage)


def quantize_graph(graph: Graph, fx: FixedSpec, input_bound_real: float | None = None) -> Budget:
    """Fill node.qparams; return the per-tensor and per-stage budget (worst case only)."""
    tensors = quantize_parameters(graph, fx)  # first: the stages' worst cases read node.qparams
    return Budget(stages=stage_budgets(graph, fx, input_bound_real), tensors=tensors)


def quantize_parameters(graph: Graph, fx: FixedSpec) -> list[dict]:
    """Fill node.qparams with round(p * 2^F); one budget row per tensor. A parameter that cannot be stored in
    K bits is refused (UserError)."""
    tensors = []
    limit = fx.value_limit_bits
    for node in graph.nodes:
        for pname, layout in node.spec.params:
            q = encode(node.params[pname], fx.frac_bits)
            node.qparams[pname] = q
            peak = max_abs(q)
            if peak >= 2**limit:
                raise UserError(
                    f"{node.name}.{pname}: |value| up to {peak / 2**fx.frac_bits:g} needs {bits_of(peak) + 1:.1f} bits "
                    f"at frac-bits {fx.frac_bits}, more than total-bits {fx.total_bits}"
                )
            zeros = float(np.mean(q == 0)) if q.size else 0.0
            tensors.append({"node": node.name, "tensor": pname, "layout": layout, "shape": list(q.shape),
                            "max_abs": peak, "headroom_bits": round(limit - bits_of(peak), 2), "zero_fraction": round(zeros, 4)})
    return tensors


def stage_budgets(graph: Graph, fx: FixedSpec, input_bound_real: float | None = None) -> list[StageBudget]:
    """Every stage's limit and worst case, propagated through the quantized graph (node.qparams set) from the
    input range; refuses (UserError) a stage that breaks the field even with every input of its layer
    inside the K-bit budget."""
    if input_bound_real is None:
        input_bound_real = graph.input_bound()
    stages = []
    limit = fx.value_limit_bits
    bounds: dict[str, int] = {}
    field_limit = fx.prime_bits - 1 - fx.kappa
    input_bound = int(np.ceil(input_bound_real * 2**fx.frac_bits))
    for node in graph.nodes:
        ins = [input_bound] if node.op == "input" else [bounds[i] for i in node.inputs]
        per_stage, bounds[node.name] = node.spec.worst_case(node, fx, *ins)
        budgeted = [input_bound] if node.op == "input" else [2**limit] * len(node.inputs)
        local, _ = node.spec.worst_case(node, fx, *budgeted)
        for stage in node.spec.stages(node, fx):
            if local[stage.name] >= 2**field_limit:
                raise UserError(
                    f"{node.name}: {stage.name} can reach {bits_of(local[stage.name]):.1f} bits with inputs inside the "
                    f"K-bit budget, which breaks the {fx.prime_bits}-bit field with kappa {fx.kappa}; lower --frac-bits "
                    f"or --total-bits"
                )
            stages.append(StageBudget(node.name, stage.name, stage.limit_bits, per_stage[stage.name]))
    return stages
