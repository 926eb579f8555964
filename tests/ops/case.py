"""A conformance case: one node of an op with its attributes, float parameters and input shapes; the inputs
are drawn by the generic test (random integers at the input bound, both signs, with the bound itself)."""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Case:
    name: str
    op: str
    attrs: dict
    in_shapes: list  # CHW (or (N,)) per input
    params: dict = field(default_factory=dict)  # float arrays (real units)
    bound: float = 4.0  # |input| <= bound, real units


def rng_params(seed: int, **shapes) -> dict:
    """Float parameters of the given shapes: weights ~ N(0, 0.5), new_gamma positive and negative."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0, 0.5, size=shape) for name, shape in shapes.items()}
