"""What an MP-SPDZ program of this backend computes, per layer and in total (one execution): dot products
(one reshare each, whatever their length), secret products (selections, x new_gamma), truncations and
comparisons by bit length, counted by each op's kernel binding (``kernels.py``) from the same numbers the
program gets. How MP-SPDZ's compiler turns a comparison or truncation into preprocessing and rounds
depends on the protocol: ``cost --runtime`` and ``run`` print the compiler's own counts."""

from __future__ import annotations

from .kernels import KERNELS, Counts
from .program import direct

COUNTED = ("dot_products", "multiplications", "truncations", "comparisons")


def node_cost(node, fx) -> dict:
    counts = Counts(node)
    KERNELS[node.op].count(node, fx, node.spec.schedule(node, direct(fx)), counts)
    return counts.row


def cost_report(graph, fx) -> dict:
    """Per-layer rows and totals, in the shape of the FANNG report's "layers"/"totals"."""
    rows = [node_cost(node, fx) for node in graph.nodes]
    totals = {key: sum(r[key] for r in rows) for key in COUNTED}
    for key in ("truncations_by_shape", "comparisons_by_bits"):
        merged: dict[str, int] = {}
        for r in rows:
            for shape, n in r[key].items():
                merged[shape] = merged.get(shape, 0) + n
        totals[key] = merged
    return {"backend": "mp-spdz", "layers": rows, "totals": totals,
            "note": "per execution; the parameters are input once. Preprocessing and rounds depend on the protocol: "
                    "cost --runtime and run print MP-SPDZ's compiler counts for the compiled program"}
