"""The Op base class and registry: each IR op is defined once, in one file of this package.

An op class holds everything about one kind of node:
  - ``params``: the tensors it owns, in order, with their layout (e.g. ("weight", "OIHW"));
  - ``infer_shape``: the only shape rule (shapes are per sample: CHW or (N,));
  - ``ref_float``: the float64 kernel on a batch (N, ...);
  - ``macs``: multiply-accumulates of the float model.
Ops the secure program executes (``executable = True``) also define:
  - ``ref_fixed``: the bit-exact integer kernel (the program's truncation schedule);
  - ``stages``/``worst_case``: what each intermediate holds and its sound bound from the weights;
  - ``error_ulp``: how the op amplifies a deviation of its input and adds its own truncations;
  - ``cost``: secret multiplications, truncations and comparisons the program performs;
  - ``template``: the snippet ``<template>.mpc.j2`` beside this file, and ``template_args``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPS: dict[str, type["Op"]] = {}


def protocol_cost(multiplications: int, truncations: dict, comparisons: dict) -> dict:
    """An op's cost: secret multiplications, TruncPr calls by (bit length, shift), LTZ comparisons by bit
    length (each also reported as totals). The MAMBA compiler's preprocessing requirement (triples, bits)
    is a fixed function of these, which tests check against the compiler itself."""
    truncations = {key: n for key, n in truncations.items() if n}
    comparisons = {key: n for key, n in comparisons.items() if n}
    return {
        "multiplications": int(multiplications),
        "truncations": int(sum(truncations.values())),
        "comparisons": int(sum(comparisons.values())),
        "truncations_by_shape": {f"{k},{m}": int(n) for (k, m), n in sorted(truncations.items())},
        "comparisons_by_bits": {str(k): int(n) for k, n in sorted(comparisons.items())},
    }


@dataclass
class Stage:
    """An intermediate an executable op holds: its name, scale exponent (in units of F) and bit limit."""

    name: str
    limit_bits: int  # values must satisfy |v| < 2^limit_bits


class Op:
    name: str = ""
    params: tuple[tuple[str, str], ...] = ()
    executable: bool = False
    template: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.name:
            raise TypeError(f"{cls.__name__} has no op name")
        if cls.name.startswith("_"):  # an abstract family base, not an op
            return
        if cls.name in OPS:
            raise TypeError(f"op {cls.name!r} defined twice")
        if cls.executable:
            for member in ("ref_fixed", "stages", "worst_case", "error_ulp", "float_tolerance", "cost", "template_args"):
                if getattr(cls, member).__func__ is getattr(Op, member).__func__:
                    raise TypeError(f"executable op {cls.name} lacks {member}")
        OPS[cls.name] = cls

    # ---- float side
    @classmethod
    def infer_shape(cls, node, in_shapes, graph) -> tuple[int, ...]:
        return in_shapes[0]

    @classmethod
    def ref_float(cls, node, *xs: np.ndarray) -> np.ndarray:
        """float64 kernel on batches (N, ...), one array per input."""
        raise NotImplementedError(cls.name)

    @classmethod
    def macs(cls, node, graph) -> int:
        return 0

    # ---- fixed-point side (executable ops)
    @classmethod
    def ref_fixed(cls, node, fx, trace, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError(cls.name)

    @classmethod
    def stages(cls, node, fx) -> list[Stage]:
        raise NotImplementedError(cls.name)

    @classmethod
    def worst_case(cls, node, fx, *in_bounds: int) -> tuple[dict[str, int], int]:
        """Sound bound on |v| of each stage and of the output, given bounds on the inputs' |v|."""
        raise NotImplementedError(cls.name)

    @classmethod
    def error_ulp(cls, node, fx, *in_errors: int) -> int:
        """Bound on |MPC - reference| at the output (units of 2^-F), given those of the inputs."""
        raise NotImplementedError(cls.name)

    @classmethod
    def float_tolerance(cls, node, fx, in_errors: list[float], in_peaks: list[float]) -> float:
        """Sound bound (real units) on |fixed reference - float| at this op's output, given the largest
        deviation of each input and the largest |float input|."""
        raise NotImplementedError(cls.name)

    @classmethod
    def cost(cls, node, fx) -> dict[str, int]:
        raise NotImplementedError(cls.name)

    @classmethod
    def template_args(cls, node, fx, layout) -> dict:
        raise NotImplementedError(cls.name)

    # which activation layout the op's program reads: "padded" (zero-padded planes) or "dense",
    # and which it can write
    input_layout: str = "dense"
    output_layouts: tuple[str, ...] = ("padded", "dense")


class NonExpanding:
    """Mixin for ops that only move or select values (a subsample, a maximum): no truncation, no new
    intermediate, and a deviation of the input passes through without growing."""

    @classmethod
    def stages(cls, node, fx):
        return []

    @classmethod
    def worst_case(cls, node, fx, in_bound):
        return {}, in_bound

    @classmethod
    def error_ulp(cls, node, fx, in_error):
        return in_error

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        return float(in_errors[0])
