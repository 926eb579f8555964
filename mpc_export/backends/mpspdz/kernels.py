"""Each op's MP-SPDZ binding, one class per op: the kernel call the program makes for a node (the kernels
themselves are ``templates/library.mpc``) and what that call computes, counted (dot products, secret
products, truncations and comparisons by bit length). Both take every number from the node's shape,
attributes and declared schedule (``ops/<op>.py``), so they cannot disagree with the reference; a new op
adds one class here and one function to the library.

Arrays are named by the program (``program.py``): ``me`` the node's output, ``ins`` its inputs', ``params``
the prefix of its parameter arrays (``<params>_weight``, ...)."""

from __future__ import annotations

from ...ops import Comparison, Truncation
from ...ops._average import power_of_two, reciprocal
from ...ops.global_pool import tree_levels

KERNELS: dict[str, "Kernel"] = {}


def _bits(schedule, kind, stage: str) -> int:
    """The declared bit length of the steps of ``kind`` on ``stage`` (a pool declares one per tap, alike)."""
    found = {s.bit_length for s in schedule.steps if isinstance(s, kind) and s.stage == stage}
    if len(found) != 1:
        raise KeyError(f"no single {kind.__name__} bit length declared on stage {stage!r}")
    return found.pop()


def _truncation(schedule, stage: str) -> Truncation:
    return next(s for s in schedule.steps if isinstance(s, Truncation) and s.stage == stage)


class Counts:
    """One node's counts (per execution), in the cost report's row shape."""

    def __init__(self, node):
        self.row = {"node": node.name, "op": node.op, "dot_products": 0, "multiplications": 0, "truncations": 0,
                    "comparisons": 0, "truncations_by_shape": {}, "comparisons_by_bits": {}}

    def dot_products(self, count: int) -> None:
        self.row["dot_products"] += count

    def products(self, count: int) -> None:
        self.row["multiplications"] += count

    def truncations(self, count: int, step: Truncation) -> None:
        key = f"{step.bit_length},{step.shift},exact"
        self.row["truncations"] += count
        self.row["truncations_by_shape"][key] = self.row["truncations_by_shape"].get(key, 0) + count

    def maxima(self, count: int, bits: int) -> None:
        """``count`` of the library's ``relu``/``maximum``: a comparison on ``bits`` bits and a product each."""
        self.row["comparisons"] += count
        self.row["comparisons_by_bits"][str(bits)] = self.row["comparisons_by_bits"].get(str(bits), 0) + count
        self.products(count)


class Kernel:
    op = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        KERNELS[cls.op] = cls()

    def call(self, node, fx, schedule, me: str, ins: list[str], params: str) -> str:
        raise NotImplementedError

    def count(self, node, fx, schedule, counts: Counts) -> None:
        """What ``call`` computes, counted."""


class InputKernel(Kernel):
    op = "input"

    def call(self, node, fx, schedule, me, ins, params):
        c, h, w = node.shape
        return f"read_into({me}, {c * h * w})"


def conv_geometry(node) -> dict:
    """The convolution's sizes: input (C, H, W), O outputs, K x K kernel, stride S, padding P, the conv grid
    (OH, OW) and the grid after the fused max pool (PH, PW) and after the fused average pool (FH, FW)."""
    c, h, w = node.in_shapes[0]
    o, _, k, _ = node.params["weight"].shape
    s, p = node.attrs.get("stride", 1), int(node.attrs.get("padding", k // 2))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    ph, pw = (oh // 2, ow // 2) if node.attrs.get("pre_pool") else (oh, ow)
    fh, fw = (ph // 2, pw // 2) if node.attrs.get("post_pool") else (ph, pw)
    return {"C": c, "H": h, "W": w, "O": o, "K": k, "S": s, "P": p, "OH": oh, "OW": ow, "PH": ph, "PW": pw, "FH": fh, "FW": fw}


class ConvBlockKernel(Kernel):
    op = "conv_block"

    def _numbers(self, node, schedule) -> dict:
        a = node.attrs
        affine = a.get("affine", True)
        trunc = _truncation(schedule, "scaled" if affine else "accumulator")
        return {"pre_pool": bool(a.get("pre_pool")),
                "pool_bits": _bits(schedule, Comparison, "accumulator") if a.get("pre_pool") else 0,
                "affine": bool(affine), "shift": trunc.shift, "trunc_bits": trunc.bit_length,
                "relu_bits": _bits(schedule, Comparison, "truncated") if a.get("relu", True) else 0,
                "post_pool": bool(a.get("post_pool")),
                "post_bits": _truncation(schedule, "pool_sum").bit_length if a.get("post_pool") else 0}

    def call(self, node, fx, schedule, me, ins, params):
        g = conv_geometry(node)
        sizes = ", ".join(f"{key}={g[key]}" for key in ("C", "H", "W", "O", "K", "S", "P", "OH", "OW"))
        numbers = ", ".join(f"{key}={value}" for key, value in self._numbers(node, schedule).items())
        return (f"conv_block({ins[0]}, {me}, {params}_weight, {params}_bias, {params}_new_gamma, {params}_new_beta, "
                f"SCRATCH, {sizes}, F={fx.frac_bits}, {numbers})")

    def count(self, node, fx, schedule, counts):
        g, n = conv_geometry(node), self._numbers(node, schedule)
        counts.dot_products(g["O"] * g["OH"] * g["OW"])
        pooled = g["O"] * g["PH"] * g["PW"]
        if n["pre_pool"]:
            counts.maxima(3 * pooled, n["pool_bits"])
        if n["affine"]:
            counts.products(pooled)
        counts.truncations(pooled, _truncation(schedule, "scaled" if n["affine"] else "accumulator"))
        if n["relu_bits"]:
            counts.maxima(pooled, n["relu_bits"])
        if n["post_pool"]:
            counts.truncations(g["O"] * g["FH"] * g["FW"], _truncation(schedule, "pool_sum"))


class DenseKernel(Kernel):
    op = "dense"

    def call(self, node, fx, schedule, me, ins, params):
        out, fan_in = node.params["weight"].shape
        trunc = _truncation(schedule, "accumulator")
        relu = _bits(schedule, Comparison, "truncated") if node.attrs["relu"] else 0
        return (f"dense({ins[0]}, {me}, {params}_weight, {params}_bias, IN={fan_in}, OUT={out}, F={fx.frac_bits}, "
                f"shift={trunc.shift}, trunc_bits={trunc.bit_length}, relu_bits={relu})")

    def count(self, node, fx, schedule, counts):
        out = node.params["weight"].shape[0]
        counts.dot_products(out)
        counts.truncations(out, _truncation(schedule, "accumulator"))
        if node.attrs["relu"]:
            counts.maxima(out, _bits(schedule, Comparison, "truncated"))


def _window(node) -> str:
    c, h, w = node.in_shapes[0]
    _, oh, ow = node.shape
    kernel = int(node.attrs.get("kernel", 2))
    return f"C={c}, H={h}, W={w}, kernel={kernel}, stride={int(node.attrs.get('stride', kernel))}, OH={oh}, OW={ow}"


def _average(schedule, area: int, f: int) -> tuple[str, Truncation]:
    """The library's ``average`` arguments (a shift for a power-of-two area, else the rounded reciprocal)
    and the truncation it makes."""
    if power_of_two(area):
        trunc = _truncation(schedule, "sum")
        return f"area_shift={trunc.shift}, reciprocal=0, bits={trunc.bit_length}", trunc
    trunc = _truncation(schedule, "sum_times_reciprocal")
    return f"area_shift=0, reciprocal={reciprocal(area, f)}, bits={trunc.bit_length}", trunc


class MaxPoolKernel(Kernel):
    op = "maxpool"

    def call(self, node, fx, schedule, me, ins, params):
        return f"max_pool({ins[0]}, {me}, {_window(node)}, bits={_bits(schedule, Comparison, 'input')})"

    def count(self, node, fx, schedule, counts):
        c, oh, ow = node.shape
        kernel = int(node.attrs.get("kernel", 2))
        counts.maxima((kernel * kernel - 1) * c * oh * ow, _bits(schedule, Comparison, "input"))


class AvgPoolKernel(Kernel):
    op = "avgpool"

    def call(self, node, fx, schedule, me, ins, params):
        kernel = int(node.attrs.get("kernel", 2))
        args, _ = _average(schedule, kernel * kernel, fx.frac_bits)
        return f"avg_pool({ins[0]}, {me}, {_window(node)}, F={fx.frac_bits}, {args})"

    def count(self, node, fx, schedule, counts):
        c, oh, ow = node.shape
        kernel = int(node.attrs.get("kernel", 2))
        counts.truncations(c * oh * ow, _average(schedule, kernel * kernel, fx.frac_bits)[1])


class GlobalMaxPoolKernel(Kernel):
    op = "global_maxpool"

    def call(self, node, fx, schedule, me, ins, params):
        c, h, w = node.in_shapes[0]
        return (f"global_pool({ins[0]}, {me}, SCRATCH, C={c}, positions={h * w}, mode='max', F={fx.frac_bits}, "
                f"area_shift=0, reciprocal=0, bits={_bits(schedule, Comparison, 'input')})")

    def count(self, node, fx, schedule, counts):
        c, h, w = node.in_shapes[0]
        counts.maxima(sum(tree_levels(h * w)) * c, _bits(schedule, Comparison, "input"))


class GlobalAvgPoolKernel(Kernel):
    op = "global_avgpool"

    def call(self, node, fx, schedule, me, ins, params):
        c, h, w = node.in_shapes[0]
        args, _ = _average(schedule, h * w, fx.frac_bits)
        return f"global_pool({ins[0]}, {me}, SCRATCH, C={c}, positions={h * w}, mode='avg', F={fx.frac_bits}, {args})"

    def count(self, node, fx, schedule, counts):
        c, h, w = node.in_shapes[0]
        counts.truncations(c, _average(schedule, h * w, fx.frac_bits)[1])


class AddKernel(Kernel):
    op = "add"

    def call(self, node, fx, schedule, me, ins, params):
        relu = _bits(schedule, Comparison, "sum") if node.attrs.get("relu") else 0
        return f"add({ins[0]}, {ins[1]}, {me}, relu_bits={relu})"

    def count(self, node, fx, schedule, counts):
        if node.attrs.get("relu"):
            c, h, w = node.shape
            counts.maxima(c * h * w, _bits(schedule, Comparison, "sum"))


class ShortcutAKernel(Kernel):
    op = "shortcut_a"

    def call(self, node, fx, schedule, me, ins, params):
        c, h, w = node.in_shapes[0]
        oc, oh, ow = node.shape
        a = node.attrs
        return (f"shortcut_a({ins[0]}, {me}, C={c}, H={h}, W={w}, stride={a['stride']}, pad_lo={a['pad_lo']}, OC={oc}, "
                f"OH={oh}, OW={ow})")
