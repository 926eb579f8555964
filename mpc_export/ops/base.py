"""The Op base class and registry: each IR op is defined once, in one file of this package.

An op class holds everything about one kind of node:
  - ``params``: the tensors it owns, in order, with their layout (e.g. ("weight", "OIHW"));
  - ``infer_shape``: the only shape rule (shapes are per sample: CHW or (N,));
  - ``ref_float``: the float64 kernel on a batch (N, ...);
  - ``macs``: multiply-accumulates of the float model.
Ops the secure program executes (``executable = True``) also define:
  - ``schedule``: the protocol steps the program performs (products, truncations with bit length, shift
    and exactness, comparisons with bit length), declared once (``protocol.py``); the stage limits
    (``stages``) and the cost (``cost``) derive from it here, the reference kernel takes its shifts from it
    and ``template_args`` hands its numbers to the snippet;
  - ``ref_fixed``: the bit-exact integer kernel, following the schedule (its shifts and alignments);
  - ``bound_terms``: the op's own magnitudes the schedule's flow names (sum |w| per output channel, |bias|):
    ``worst_case`` (each stage's sound bound) and ``error_ulp`` (how the op amplifies a deviation of its
    input and adds its own truncations) are derived from the declared flow by one routine
    (``Schedule.worst_case``, ``Schedule.error_ulp``), not written per op;
  - ``template``: the snippet ``<template>.mpc.j2`` beside this file, and ``template_args``.
"""

from __future__ import annotations

import numpy as np

from .protocol import Schedule, Stage

OPS: dict[str, type["Op"]] = {}


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
            for member in ("schedule", "ref_fixed", "float_tolerance", "template_args"):
                if getattr(cls, member).__func__ is getattr(Op, member).__func__:
                    raise TypeError(f"executable op {cls.name} lacks {member}")
            if not getattr(cls.schedule.__func__, "narrowed_by_calibration", False):  # declared here or inherited
                cls.schedule = classmethod(_calibrated(cls.schedule.__func__))
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
    def schedule(cls, node, fx) -> Schedule:
        """The protocol steps of this node's program and its intermediates (see protocol.py)."""
        raise NotImplementedError(cls.name)

    @classmethod
    def stages(cls, node, fx) -> list[Stage]:
        """Every intermediate with its limit: the protocols' input ranges, from the schedule."""
        return cls.schedule(node, fx).stages()

    @classmethod
    def bound_terms(cls, node, fx) -> dict:
        """The magnitudes the schedule's flow names (``Weighted.gain`` / ``offset``), each an object array of
        Python ints, one per output channel (e.g. "weight": sum |w_q| over a kernel); none by default."""
        return {}

    @classmethod
    def worst_case(cls, node, fx, *in_bounds: int) -> tuple[dict[str, int], int]:
        """Sound bound on |v| of each stage and of the output, given bounds on the inputs' |v| (integers at
        scale 2^F): the declared flow propagated (``Schedule.worst_case``)."""
        return cls.schedule(node, fx).worst_case(cls.bound_terms(node, fx), in_bounds)

    @classmethod
    def error_ulp(cls, node, fx, *in_errors: int) -> int:
        """Bound on |MPC - reference| at the output (units of 2^-F), given those of the inputs: the declared
        flow propagated (``Schedule.error_ulp``)."""
        return cls.schedule(node, fx).error_ulp(cls.bound_terms(node, fx), in_errors)

    @classmethod
    def float_tolerance(cls, node, fx, in_errors: list[float], in_peaks: list[float]) -> float:
        """Sound bound (real units) on |fixed reference - float| at this op's output, given the largest
        deviation of each input and the largest |float input|."""
        raise NotImplementedError(cls.name)

    @classmethod
    def cost(cls, node, fx) -> dict:
        """Multiplications, truncations, comparisons, triples, random bits and rounds: the schedule priced."""
        return cls.schedule(node, fx).cost(fx.kappa)

    @classmethod
    def template_args(cls, node, fx, layout) -> dict:
        raise NotImplementedError(cls.name)

    @classmethod
    def public_pattern(cls, node, fx) -> np.ndarray | None:
        """Public integers this node's program reads at run time (``--sparsity public``: the non-zero weight
        taps), as an int64 array, or None when it reads none. They travel in one file on one channel, the
        nodes' in graph order; the snippet finds its own through ``layout.pattern(node)``."""
        return None

    # which activation layout the op's program reads: "padded" (zero-padded planes), "dense", or "any"
    # (either, the producer's choice), and which it can write
    input_layout: str = "dense"
    output_layouts: tuple[str, ...] = ("padded", "dense")
    # how the snippet's --debug print indexes the output: "chw" (channel, row, column) or "vector"
    # (0, 0, i: a dense layer's outputs, a global pool's channels)
    debug_print: str = "chw"


def _calibrated(declare):
    """An op's schedule with the comparisons narrowed to the build's calibrated limits for this node
    (``Protocol.comparison_limits``, from ``build --calibrate``): its stages, cost, reference and template
    all take them from here, and no op has to know about calibration."""

    def schedule(cls, node, fx) -> Schedule:
        declared = declare(cls, node, fx)
        limits = fx.protocol.limits_for(node.name)
        return declared.narrowed(limits) if limits else declared

    schedule.__doc__ = declare.__doc__
    schedule.narrowed_by_calibration = True
    return schedule


class NonExpanding:
    """Mixin for ops that only move or select values (a subsample, a maximum): no truncation, and a
    deviation of the input passes through without growing (their flows only ``Hold`` values)."""

    @classmethod
    def float_tolerance(cls, node, fx, in_errors, in_peaks):
        return float(in_errors[0])
