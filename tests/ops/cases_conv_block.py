from case import Case, rng_params

p = dict(weight=(3, 2, 3, 3), bias=(3,), new_gamma=(3,), new_beta=(3,))
CASES = [
    Case("3x3 pad 1, affine, relu", "conv_block", {"stride": 1, "padding": 1}, [(2, 6, 6)], rng_params(1, **p)),
    Case("3x3 stride 2 pad 1, odd map", "conv_block", {"stride": 2, "padding": 1}, [(2, 7, 7)], rng_params(2, **p)),
    Case("3x3 pad 0, no affine, no relu", "conv_block", {"stride": 1, "padding": 0, "affine": False, "relu": False}, [(2, 6, 5)],
         rng_params(3, **p)),
    Case("3x3 max pool first, then affine and relu", "conv_block", {"stride": 1, "padding": 1, "pre_pool": True}, [(2, 6, 6)],
         rng_params(4, **p)),
    Case("3x3, relu, then 2x2 average", "conv_block", {"stride": 1, "padding": 1, "post_pool": True}, [(2, 6, 6)], rng_params(5, **p)),
    Case("1x1", "conv_block", {"stride": 1, "padding": 0}, [(2, 4, 4)],
         rng_params(6, weight=(3, 2, 1, 1), bias=(3,), new_gamma=(3,), new_beta=(3,))),
    Case("5x5 pad 2, both pools", "conv_block", {"stride": 1, "padding": 2, "pre_pool": True, "post_pool": True}, [(2, 8, 8)],
         rng_params(7, weight=(3, 2, 5, 5), bias=(3,), new_gamma=(3,), new_beta=(3,))),
]
