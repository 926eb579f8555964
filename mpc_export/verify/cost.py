"""Cost report: per layer and in total, summed from each op's ``cost`` (the single source), with a
rough round estimate and what a public sparsity pattern would save."""

from __future__ import annotations

import math

import numpy as np


def _merge(into: dict, more: dict) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


def rounds_estimate(cost: dict, iterations: int) -> int:
    """Rough rounds of communication: one per run-time loop iteration (its multiplications are merged
    into one round by the compiler), one per batch of truncations, ~2 + log2(k) per comparison batch."""
    comparisons = sum(2 + math.ceil(math.log2(int(k))) for k in cost["comparisons_by_bits"])
    return iterations + len(cost["truncations_by_shape"]) + comparisons


def loop_iterations(node) -> int:
    """Sequential run-time loop iterations the op's program performs (per execution)."""
    if node.op == "conv_block":
        return int(node.params["weight"].shape[0] * node.params["weight"].shape[1])
    if node.op == "dense":
        return int(node.params["weight"].shape[1])
    if node.op in ("add", "shortcut_a", "global_avgpool", "global_maxpool"):
        return int(node.in_shapes[0][0])
    return 0


def total_cost(graph, fx) -> dict:
    layers = []
    totals = {"multiplications": 0, "truncations": 0, "comparisons": 0, "rounds_estimate": 0}
    by_shape: dict = {}
    by_bits: dict = {}
    public_sparsity_saving = 0
    for node in graph.nodes:
        cost = node.spec.cost(node, fx)
        rounds = rounds_estimate(cost, loop_iterations(node))
        weight = node.qparams.get("weight")
        zero_fraction = float(np.mean(weight == 0)) if weight is not None and weight.size else 0.0
        # multiplications by a zero weight that a public pattern would let the program skip
        saving = int(round(cost["multiplications"] * zero_fraction)) if node.op in ("conv_block", "dense") else 0
        public_sparsity_saving += saving
        layers.append({"node": node.name, "op": node.op, **cost, "rounds_estimate": rounds,
                       "weight_zero_fraction": round(zero_fraction, 4), "public_sparsity_saving": saving})
        for key in ("multiplications", "truncations", "comparisons"):
            totals[key] += cost[key]
        totals["rounds_estimate"] += rounds
        _merge(by_shape, cost["truncations_by_shape"])
        _merge(by_bits, cost["comparisons_by_bits"])
    totals["truncations_by_shape"] = by_shape
    totals["comparisons_by_bits"] = by_bits
    return {
        "layers": layers,
        "totals": totals,
        "sparsity": {
            "public_pattern_would_save_multiplications": public_sparsity_saving,
            "enabled": False,
            "note": "skipping zero weights needs the sparsity pattern public: it leaks which weights are zero "
                    "(the model's structure); off by default",
        },
    }
