"""Cost report: per layer and in total, each op's declared schedule priced (``Op.cost``, the single
source): secret multiplications, truncations by shape, comparisons by bit length, the preprocessing they
need (triples and random bits, as the MAMBA compiler counts them) and rounds as the program runs them
(each run-time loop iteration's protocol calls one after the other), and the same totals for every other
protocol option (what public weights or a public sparsity pattern would buy). The program's runtime check
(``codegen/runtime_check.py``: a few triples and random bits opened before any input) is the first row and
is in every total."""

from __future__ import annotations

import numpy as np

from ..codegen import runtime_check

SUMMED = ("multiplications", "truncations", "comparisons", "triples", "bits", "rounds")


def _merge(into: dict, more: dict) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


def _zero_weight_fraction(node) -> float | None:
    """Fraction of the quantized weights that are zero (None: the op has no weights)."""
    weight = node.qparams.get("weight")
    return float(np.mean(weight == 0)) if weight is not None and weight.size else None


def cost_of_options(graph, fx) -> list[dict]:
    """The totals this graph's program would need with each convolution, weights and sparsity option that
    go together (public sparsity needs private weights; the build's truncation and calibration kept): what
    `cost` shows next to the build's own choice."""
    from dataclasses import replace

    from ..fixedpoint import CONVOLUTION_MODES, SPARSITY_MODES, WEIGHT_MODES

    options = []
    for convolution in CONVOLUTION_MODES:
        for weights in WEIGHT_MODES:
            for sparsity in SPARSITY_MODES:
                protocol = replace(fx.protocol, convolution=convolution, weights=weights, sparsity=sparsity)
                if protocol.public_weights and protocol.public_sparsity:
                    continue
                alternative = replace(fx, protocol=protocol)
                totals = {key: runtime_check.cost()[key] for key in ("triples", "bits", "rounds")}
                for node in graph.nodes:
                    cost = node.spec.cost(node, alternative)
                    for key in totals:
                        totals[key] += cost[key]
                options.append({"convolution": convolution, "weights": weights, "sparsity": sparsity, **totals})
    return options


def total_cost(graph, fx) -> dict:
    layers = []
    totals = {key: 0 for key in SUMMED}
    by_shape: dict = {}
    by_bits: dict = {}
    check = runtime_check.cost()
    layers.append({"node": "runtime_check", "op": "runtime_check", **check, "weight_zero_fraction": None})
    for key in SUMMED:
        totals[key] += check[key]
    for node in graph.nodes:
        cost = node.spec.cost(node, fx)
        zero_fraction = _zero_weight_fraction(node)
        layers.append({"node": node.name, "op": node.op, **cost,
                       "weight_zero_fraction": None if zero_fraction is None else round(zero_fraction, 4)})
        for key in SUMMED:
            totals[key] += cost[key]
        _merge(by_shape, cost["truncations_by_shape"])
        _merge(by_bits, cost["comparisons_by_bits"])
    totals["truncations_by_shape"] = by_shape
    totals["comparisons_by_bits"] = by_bits
    return {
        "protocol": fx.protocol.as_dict(),
        "layers": layers,
        "totals": totals,
    }
