from case import Case, rng_params

CASES = [
    Case("relu", "dense", {"relu": True}, [(7,)], rng_params(11, weight=(5, 7), bias=(5,))),
    Case("logits, from a CHW map", "dense", {"relu": False}, [(2, 2, 3)], rng_params(12, weight=(4, 12), bias=(4,)), bound=8.0),
]
