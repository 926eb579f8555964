"""The integer kernels against the `fixedpoint` package as an independent oracle: encode (round half
away from zero), decode, multiply + floor truncation, dot product with one truncation, 2x2 average
pool (floor of the sum / 4), ReLU; random shapes and values including negatives and budget edges."""

import numpy as np
from fixedpoint import FixedPoint
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mpc_export.ops._kernels import pool2x2_sum
from mpc_export.fixedpoint import decode, encode, floor_shift
from mpc_export.ops import _exact as exact

F = 12
K = 41
raw = st.integers(-(2 ** (K - 1)) + 1, 2 ** (K - 1) - 1)


def fp_raw(v: int, frac=F, int_bits=K) -> FixedPoint:
    """A FixedPoint holding the raw integer v at scale 2^frac."""
    return FixedPoint(hex(v & ((1 << (int_bits + frac)) - 1)), signed=True, m=int_bits, n=frac, overflow_alert="error")


@settings(max_examples=300, deadline=None)
@given(st.floats(-(2.0**27), 2.0**27, allow_nan=False))
def test_encode_rounds_half_away_from_zero_like_fixedpoint(x):
    want = FixedPoint(x, signed=True, m=30, n=F, rounding="out")
    assert int(encode(np.array([x]), F)[0]) == want.bits - ((1 << (30 + F)) if want.bits >> (30 + F - 1) else 0)


@settings(max_examples=200, deadline=None)
@given(raw)
def test_decode_matches_fixedpoint(v):
    assert float(decode(np.array([v]), F)[0]) == float(fp_raw(v))


@settings(max_examples=300, deadline=None)
@given(raw, st.integers(-(2**20), 2**20))
def test_multiply_then_floor_truncate(a, b):
    product = fp_raw(a) * fp_raw(b, int_bits=24)
    product.round_down(F)
    want = product
    got = floor_shift(np.array([a], dtype=object) * b, F)[0]
    assert float(want) == int(got) / 2**F


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    arrays(np.int64, n, elements=st.integers(-(2**20), 2**20)),
    arrays(np.int64, n, elements=st.integers(-(2**18), 2**18)))))
def test_dot_product_with_one_truncation(pair):
    x, w = pair
    total = fp_raw(0, int_bits=64) * fp_raw(0, int_bits=8)  # accumulator at scale 2^2F, wide integer part
    for xi, wi in zip(x, w):
        total = total + fp_raw(int(xi), int_bits=32) * fp_raw(int(wi), int_bits=32)
    total.round_down(F)
    got = floor_shift(exact.linear(x[None], w[None]), F)[0, 0]
    assert float(total) == int(got) / 2**F


@settings(max_examples=150, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 2), st.integers(1, 3), st.sampled_from([2, 4, 6]), st.sampled_from([2, 4])),
              elements=st.integers(-(2 ** (K - 1)) + 1, 2 ** (K - 1) - 1)))
def test_average_pool_is_floor_of_sum_over_four(x):
    got = floor_shift(pool2x2_sum(x), 2)
    n, c, h, w = x.shape
    for i in range(n):
        for ch in range(c):
            for y in range(h // 2):
                for xx in range(w // 2):
                    acc = fp_raw(0, int_bits=K + 2)
                    for dy in range(2):
                        for dx in range(2):
                            acc = acc + fp_raw(int(x[i, ch, 2 * y + dy, 2 * xx + dx]), int_bits=K + 2)
                    quarter = acc * FixedPoint(0.25, signed=True, m=2, n=2)
                    quarter.round_down(F)
                    assert float(quarter) == int(got[i, ch, y, xx]) / 2**F


@settings(max_examples=200, deadline=None)
@given(raw)
def test_relu(v):
    want = fp_raw(v) if float(fp_raw(v)) > 0 else fp_raw(0)
    assert int(np.maximum(np.array([v]), 0)[0]) / 2**F == float(want)


@settings(max_examples=60, deadline=None)
@given(st.integers(-(2**40), 2**40), st.integers(1, 24), st.sampled_from([np.int64, np.float64]))
def test_simulated_truncpr_rounds_up_with_the_dropped_fraction(v, shift, dtype):
    """TruncPr's law (Scale-Mamba): floor(v / 2^m) + u, Pr[u = 1] = (v mod 2^m) / 2^m."""
    from mpc_export.fixedpoint import truncate

    n = 4000
    values = np.full(n, v, dtype=dtype)
    out = truncate(values, shift, np.random.default_rng(v % 1000))
    floor = v >> shift
    assert set(np.unique(out).astype(np.int64).tolist()) <= {floor, floor + 1}
    p = (v % 2**shift) / 2**shift
    rate = float(np.mean(out.astype(np.int64) - floor))
    # five standard deviations, plus 3 round-ups of slack for a tiny p (n * p << 1: the Poisson regime, where
    # one round-up in 4000 is already many deviations away and P[>= 4] < 1e-9 while n * p < 0.01)
    assert abs(rate - p) <= 5 * np.sqrt(p * (1 - p) / n) + 3 / n
    assert np.array_equal(truncate(values, shift).astype(np.int64), np.full(n, floor))  # without rng: the floor
