"""Cost report: per layer and in total, each op's declared schedule priced (``Op.cost``, the single
source): secret multiplications, truncations by shape, comparisons by bit length, the preprocessing they
need (triples and random bits, as the MAMBA compiler counts them) and rounds (network round trips, as
the runtime counts them: every opening and private-input instruction; ``ops/protocol.py``), and the same
totals for every other protocol option (what public weights or a public sparsity pattern would buy). The
program's runtime check (``runtime_check.py``: a few triples and random bits opened before any
input) is the first row, the parameters' input the second (both once per program), then one execution's
input and logits and its ops."""

from __future__ import annotations

import numpy as np

from . import runtime_check
from .render import input_output_rounds

SUMMED = ("multiplications", "truncations", "comparisons", "triples", "bits", "rounds")


def _merge(into: dict, more: dict) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


def _zero_weight_fraction(node) -> float | None:
    """Fraction of the quantized weights that are zero (None: the op has no weights)."""
    weight = node.qparams.get("weight")
    return float(np.mean(weight == 0)) if weight is not None and weight.size else None


def _io_rows(graph, fx, params) -> list[dict]:
    """The rounds outside the ops: the secret parameters' input (once) and each execution's input and
    printed logits (render.input_output_rounds)."""
    parameters, per_execution = input_output_rounds(graph, fx, params)
    empty = {key: 0 for key in SUMMED}
    return [{"node": "parameter_input", "op": "input_output", **empty, "rounds": parameters},
            {"node": "input_and_logits", "op": "input_output", **empty, "rounds": per_execution}]


def cost_of_options(graph, fx, params) -> list[dict]:
    """The totals this graph's program would need with each convolution, weights and sparsity option that
    go together (public sparsity needs private weights; the build's truncation and calibration kept): what
    `cost` shows next to the build's own choice."""
    from dataclasses import replace

    from ...fixedpoint import CONVOLUTION_MODES, SPARSITY_MODES, WEIGHT_MODES

    options = []
    for convolution in CONVOLUTION_MODES:
        for weights in WEIGHT_MODES:
            for sparsity in SPARSITY_MODES:
                protocol = replace(fx.protocol, convolution=convolution, weights=weights, sparsity=sparsity)
                if protocol.public_weights and protocol.public_sparsity:
                    continue
                totals = total_cost(graph, replace(fx, protocol=protocol), params)["totals"]
                options.append({"convolution": convolution, "weights": weights, "sparsity": sparsity,
                                **{key: totals[key] for key in ("triples", "bits", "rounds")}})
    return options


def total_cost(graph, fx, params) -> dict:
    """Per row and in total: the runtime check and the parameters' input (once per program), then one
    execution (its input and logits, then every op). A build with E executions needs the once-per-program
    rows once and the others E times; the totals are for one execution."""
    rows = [{"node": "runtime_check", "op": "runtime_check", **runtime_check.cost()}, *_io_rows(graph, fx, params)]
    for row in rows:
        row["weight_zero_fraction"] = None
    for node in graph.nodes:
        zero_fraction = _zero_weight_fraction(node)
        rows.append({"node": node.name, "op": node.op, **node.spec.cost(node, fx),
                     "weight_zero_fraction": None if zero_fraction is None else round(zero_fraction, 4)})
    totals = {key: sum(row[key] for row in rows) for key in SUMMED}
    totals["truncations_by_shape"], totals["comparisons_by_bits"] = {}, {}
    for row in rows:
        _merge(totals["truncations_by_shape"], row.get("truncations_by_shape", {}))
        _merge(totals["comparisons_by_bits"], row.get("comparisons_by_bits", {}))
    return {
        "protocol": fx.protocol.as_dict(),
        "layers": rows,
        "totals": totals,
        "once_per_program": ["runtime_check", "parameter_input"],
    }
