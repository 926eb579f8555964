"""What an MP-SPDZ program of this backend computes, counted from its kernels (``templates/library.mpc``):
dot products (one reshare each, whatever their length), secret products (selections, x new_gamma),
truncations and comparisons by bit length, per layer and in total. How MP-SPDZ's compiler turns a
comparison or truncation into preprocessing depends on the protocol; ``run`` records the compiler's own
"Program requires" counts and communication estimate for the program it compiles."""

from __future__ import annotations

from .program import direct, _bits, _truncation  # noqa: F401  (the kernels' numbers, from the schedule)
from ...ops import Comparison
from ...ops.global_pool import tree_levels

COUNTED = ("dot_products", "multiplications", "truncations", "comparisons")


def _row(node) -> dict:
    return {"node": node.name, "op": node.op, **{key: 0 for key in COUNTED}, "truncations_by_shape": {}, "comparisons_by_bits": {}}


def _add(row: dict, kind: str, count: int, bits: int = 0, shift: int = 0) -> None:
    if count <= 0:
        return
    if kind == "comparison":
        row["comparisons"] += count
        row["comparisons_by_bits"][str(bits)] = row["comparisons_by_bits"].get(str(bits), 0) + count
    elif kind == "truncation":
        row["truncations"] += count
        key = f"{bits},{shift},exact"
        row["truncations_by_shape"][key] = row["truncations_by_shape"].get(key, 0) + count
    else:
        row[kind] += count


def _maxima(row: dict, count: int, bits: int) -> None:
    """``count`` pairwise maxima: a comparison of the difference and a selection product each."""
    _add(row, "comparison", count, bits)
    _add(row, "multiplications", count)


def node_cost(node, fx) -> dict:
    row = _row(node)
    if not node.spec.executable or node.op in ("input", "shortcut_a"):
        return row
    schedule = node.spec.schedule(node, direct(fx))
    a = node.attrs
    if node.op == "conv_block":
        c, h, w = node.in_shapes[0]
        o, _, k, _ = node.params["weight"].shape
        stride, pad = a.get("stride", 1), int(a.get("padding", k // 2))
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        _add(row, "dot_products", o * oh * ow)
        if a.get("pre_pool"):
            oh, ow = oh // 2, ow // 2
            _maxima(row, 3 * o * oh * ow, _bits(schedule, Comparison, "accumulator"))
        affine = a.get("affine", True)
        if affine:
            _add(row, "multiplications", o * oh * ow)
        trunc = _truncation(schedule, "scaled" if affine else "accumulator")
        _add(row, "truncation", o * oh * ow, trunc.bit_length, trunc.shift)
        if a.get("relu", True):
            _maxima(row, o * oh * ow, _bits(schedule, Comparison, "truncated"))
        if a.get("post_pool"):
            trunc = _truncation(schedule, "pool_sum")
            _add(row, "truncation", o * (oh // 2) * (ow // 2), trunc.bit_length, trunc.shift)
    elif node.op == "dense":
        out = node.params["weight"].shape[0]
        trunc = _truncation(schedule, "accumulator")
        _add(row, "dot_products", out)
        _add(row, "truncation", out, trunc.bit_length, trunc.shift)
        if a["relu"]:
            _maxima(row, out, _bits(schedule, Comparison, "truncated"))
    elif node.op in ("maxpool", "avgpool"):
        c, oh, ow = node.shape
        kernel = int(a.get("kernel", 2))
        if node.op == "maxpool":
            _maxima(row, (kernel * kernel - 1) * c * oh * ow, _bits(schedule, Comparison, "input"))
        else:
            _average(row, schedule, c * oh * ow)
    elif node.op == "global_maxpool":
        c, h, w = node.in_shapes[0]
        _maxima(row, sum(tree_levels(h * w)) * c, _bits(schedule, Comparison, "input"))
    elif node.op == "global_avgpool":
        _average(row, schedule, node.in_shapes[0][0])
    elif node.op == "add" and a.get("relu"):
        _maxima(row, int(node.shape[0] * node.shape[1] * node.shape[2]), _bits(schedule, Comparison, "sum"))
    return row


def _average(row: dict, schedule, count: int) -> None:
    (trunc,) = [s for s in schedule.steps]
    _add(row, "truncation", count, trunc.bit_length, trunc.shift)


def cost_report(graph, fx) -> dict:
    """Per-layer rows (one execution) and totals, in the shape of the FANNG report's "layers"/"totals"."""
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
                    "run records MP-SPDZ's compiler counts for the compiled program"}
