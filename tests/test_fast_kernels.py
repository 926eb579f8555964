"""The int8-GEMM convolution and the int64 conv_block reference against Python-int oracles written here
from the definitions (explicit loops over taps, floor division, 2x2 windows): balanced base-256 digits at
their boundaries (-128, 127, 128, -129, the largest magnitude a digit count holds), negative values,
channel / output counts that are not multiples of 8, strides 1 and 2, 1x1 kernels, batches too small for
torch._int_mm, weights too big for int8 digits and values too big for int64 (both fall back)."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_export.fixedpoint import FixedSpec
from mpc_export.ir.graph import Node
from mpc_export.ops import _exact as exact
from mpc_export.ops.conv_block import ConvBlock
from mpc_export.reference.run import Trace
from ops.oracle import conv_sum  # the conformance tests' Python-int convolution


def largest_for(count: int) -> int:
    """The largest magnitude `count` balanced base-256 digits hold: 127 * (1 + 256 + ... + 256^(count-1))."""
    return sum(127 * 256**i for i in range(count))


DIGIT_EDGES = [0, 1, -1, 127, -127, 128, -128, 129, -129, 255, -255, 256, -256, 32639, -32639, 32640, -32640,
               65535, -65535, largest_for(3), -largest_for(3), 2**40, -(2**40)]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(DIGIT_EDGES), st.integers(-(2**50), 2**50)), min_size=1, max_size=30))
def test_balanced_digits_rebuild_the_value_within_int8(values):
    v = np.array(values, dtype=np.int64)
    count = exact.balanced_digit_count(int(np.max(np.abs(v))))
    assert largest_for(count) >= int(np.max(np.abs(v))) and (count == 1 or largest_for(count - 1) < int(np.max(np.abs(v))))
    digits = exact.balanced_digits(torch.from_numpy(v), count)
    assert len(digits) == count and all(d.dtype == torch.int8 for d in digits)
    for position, value in enumerate(values):
        assert sum(int(d[position]) * 256**i for i, d in enumerate(digits)) == value


conv_case = st.fixed_dictionaries({
    "batch": st.integers(1, 3), "channels": st.integers(1, 11), "outputs": st.integers(1, 13),
    "size": st.integers(3, 7), "kernel": st.sampled_from([1, 3]), "stride": st.sampled_from([1, 2]),
    "x_bits": st.sampled_from([1, 7, 8, 13, 16, 17, 24]), "w_bits": st.sampled_from([1, 7, 8, 12]),
    "seed": st.integers(0, 2**32 - 1)})


def edge_heavy(rng, shape, bits):
    """Random integers below 2^bits in magnitude, a third of them digit edges (-128, 127, +-(2^bits - 1))."""
    top = 2**bits - 1
    values = rng.integers(-top, top + 1, size=shape)
    edges = np.array([e for e in (-128, 127, 128, -129, top, -top, 0) if abs(e) <= top], dtype=np.int64)
    mask = rng.random(shape) < 0.33
    values[mask] = rng.choice(edges, size=int(mask.sum()))
    return values.astype(np.int64)


@settings(max_examples=60, deadline=None)
@given(conv_case)
def test_int8_conv_equals_python_ints(case):
    rng = np.random.default_rng(case["seed"])
    k, size = case["kernel"], case["size"]
    x = edge_heavy(rng, (case["batch"], case["channels"], size, size), case["x_bits"])
    w = edge_heavy(rng, (case["outputs"], case["channels"], k, k), case["w_bits"])
    padding = k // 2
    x_bound, w_bound = int(np.max(np.abs(x))), int(np.max(np.abs(w)))
    assert exact.int8_conv_is_exact(x_bound, w_bound, k * k * exact.padded_channels(case["channels"]))
    terms = exact.conv2d_int8(x, x_bound, exact.weight_digit_matrices(w), k, padding, case["stride"])
    want = conv_sum(x, w, case["stride"], padding)
    assert terms.dtype == torch.int32
    assert sum_of_terms(terms, want.shape) == [int(v) for v in want.reshape(-1)]


def sum_of_terms(terms, nchw_shape) -> list[int]:
    """sum_k 256^k A_k in Python ints, from conv2d_int8's terms (K, N * Ho * Wo rows in NHW order, O' >=
    O columns), listed in NCHW order."""
    n, o, ho, wo = nchw_shape
    total = np.zeros((n * ho * wo, o), dtype=object)
    for k, term in enumerate(terms):
        total = total + term[:, :o].numpy().astype(object) * 256**k
    return [int(v) for v in total.reshape(n, ho, wo, o).transpose(0, 3, 1, 2).reshape(-1)]


def test_int8_conv_bound_refuses_what_int32_or_int64_cannot_hold():
    assert exact.int8_conv_is_exact(2**15, 2**11, 9 * 256)
    assert not exact.int8_conv_is_exact(127, 127, 2**17)  # 2^17 products of 2^14 reach 2^31
    assert not exact.int8_conv_is_exact(2**40, 2**20, 9)  # recombination beyond int64
    assert exact.int8_conv_is_exact(127, 2**16, 2**16)  # one digit of x: each GEMM term is one pair of digits
    assert not exact.int8_conv_is_exact(2**15, 2**11, 2**16)  # two pairs of 128 * 128 over 2^16 products: 2^31
    assert exact.int8_conv_is_exact(2**15, 2**11, 2**16 - 8)


def block_python_ints(x, q, attrs, f):
    """The conv_block schedule (module docstring) with Python ints: the output and each stage's max |v|."""
    acc = conv_sum(x, q["weight"], attrs["stride"], q["weight"].shape[2] // 2)
    acc = acc + q["bias"].astype(object)[None, :, None, None] * 2**f
    peaks = {"accumulator": max((abs(int(v)) for v in acc.ravel()), default=0)}
    if attrs["pre_pool"]:
        n, c, h, w = acc.shape
        acc = acc[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    scaled = acc * q["new_gamma"].astype(object)[None, :, None, None] + q["new_beta"].astype(object)[None, :, None, None] * 2 ** (2 * f)
    peaks["scaled"] = max((abs(int(v)) for v in scaled.ravel()), default=0)
    y = np.vectorize(lambda v: int(v) // 2 ** (2 * f), otypes=[object])(scaled)
    peaks["truncated"] = max((abs(int(v)) for v in y.ravel()), default=0)
    if attrs["relu"]:
        y = np.vectorize(lambda v: max(int(v), 0), otypes=[object])(y)
    if attrs["post_pool"]:
        n, c, h, w = y.shape
        total = y[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).sum(axis=(3, 5))
        peaks["pool_sum"] = max((abs(int(v)) for v in total.ravel()), default=0)
        y = np.vectorize(lambda v: int(v) // 4, otypes=[object])(total)
    return y, peaks


@settings(max_examples=40, deadline=None)
@given(st.fixed_dictionaries({
    "batch": st.sampled_from([1, 2, 5]), "channels": st.integers(1, 9), "outputs": st.integers(1, 10),
    "size": st.sampled_from([2, 4, 5, 6]), "kernel": st.sampled_from([1, 3]), "stride": st.sampled_from([1, 2]),
    "pre_pool": st.booleans(), "post_pool": st.booleans(), "relu": st.booleans(),
    # 12: int8 digits; 20: weights with three digits (float64 / limb fallback for larger patches);
    # 30 with x_bits 30: beyond int64 (Python ints)
    # x_bits 15 non-negative: three digits that centring makes two (the int8 path's shift)
    "w_bits": st.sampled_from([12, 20, 30]), "x_bits": st.sampled_from([8, 15, 16, 30]), "non_negative": st.booleans(),
    "seed": st.integers(0, 2**32 - 1)}))
def test_conv_block_reference_equals_python_ints(case):
    f = 12
    fx = FixedSpec(frac_bits=f)
    rng = np.random.default_rng(case["seed"])
    c, o, k, size = case["channels"], case["outputs"], case["kernel"], case["size"]
    q = {"weight": edge_heavy(rng, (o, c, k, k), case["w_bits"]), "bias": edge_heavy(rng, (o,), 16),
         "new_gamma": edge_heavy(rng, (o,), 14), "new_beta": edge_heavy(rng, (o,), 16)}
    attrs = {"stride": case["stride"], "pre_pool": case["pre_pool"], "post_pool": case["post_pool"],
             "relu": case["relu"], "affine": True}
    node = Node(name="block", op="conv_block", inputs=["x"], attrs=dict(attrs),
                params={key: v.astype(np.float64) for key, v in q.items()}, in_shapes=[(c, size, size)], qparams=q)
    node.shape = ConvBlock.infer_shape(node, node.in_shapes, None)
    x = edge_heavy(rng, (case["batch"], c, size, size), case["x_bits"])
    x = np.abs(x) if case["non_negative"] else x
    trace = Trace()
    got = ConvBlock.ref_fixed(node, fx, trace, x)
    kept = got.copy()
    ConvBlock.ref_fixed(node, fx, Trace(), x[::-1].copy())  # another batch: the first result must not change
    want, peaks = block_python_ints(x, q, attrs, f)
    assert got.shape == want.shape
    assert [int(v) for v in got.ravel()] == [int(v) for v in want.ravel()] == [int(v) for v in kept.ravel()]
    assert {stage: trace.peaks[("block", stage)] for stage in peaks} == peaks


@settings(max_examples=40, deadline=None)
@given(conv_case, st.integers(-(2**16), 2**16))
def test_int8_conv_of_shifted_x_reads_the_padding_as_zero(case, offset):
    """conv2d_int8(shift=c) is sum(w * (x - c)) with x = 0 in the padding: adding c * sum(w_o) gives the
    convolution of x, for any c; reused scratch buffers give the same values call after call."""
    rng = np.random.default_rng(case["seed"])
    k, size = case["kernel"], case["size"]
    x = edge_heavy(rng, (case["batch"], case["channels"], size, size), case["x_bits"]) + offset
    w = edge_heavy(rng, (case["outputs"], case["channels"], k, k), case["w_bits"])
    shift, bound = exact.centre(min(int(x.min()), 0), max(int(x.max()), 0))  # 0: the padding
    assert int(np.max(np.abs(x - shift))) <= bound and abs(shift) <= bound
    if not exact.int8_conv_is_exact(bound, int(np.max(np.abs(w))), k * k * exact.padded_channels(case["channels"])):
        return
    scratch = exact.ScratchBuffers()
    want = conv_sum(x, w, case["stride"], k // 2)
    shifted_back = shift * w.sum(axis=(1, 2, 3))[None, :, None, None]
    for _ in range(2):
        terms = exact.conv2d_int8(x, bound, exact.weight_digit_matrices(w), k, k // 2, case["stride"], shift=shift, scratch=scratch)
        assert sum_of_terms(terms, want.shape) == [int(v) for v in (want - shifted_back).reshape(-1)]


# --- data files parsed per file (verify.integrity.parse_values) against the runtime's rules per token ---

def runtime_value(token: str, reading_precision: int):
    """What FANNG-MPC stores for one token, from its documented rules with exact fractions: a token with a
    point is stod (nearest double) times 2^R, rounded half away from zero; one without is stoi (|v| < 2^31).
    None where the runtime aborts."""
    from fractions import Fraction
    import re

    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", token):
        return None
    if "." not in token:
        return int(token) if -(2**31) <= int(token) < 2**31 else None
    scaled = Fraction(float(token)) * 2**reading_precision  # stod: the nearest double, then exact scaling
    magnitude = int(abs(scaled) + Fraction(1, 2))
    return -magnitude if scaled < 0 else magnitude


TOKEN_EDGES = ["0", "-0", "0.0", "-0.0", "1", "-1", "2147483647", "-2147483648", "2147483648", "-2147483649",
               "0.5", "-0.5", "0.00012207031250", "-0.00012207031250", "0.0001220703125", "0.000244140625",
               "12345.678", "-9.99999999999", "007", "-007.50", "1.", ".5", "1e5", "+1", "nan", "1-2", "--1", "1.2.3",
               "99999999999999999999.5", "3.000000000000000000001"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(TOKEN_EDGES), st.integers(-(2**33), 2**33).map(str),
                          st.decimals(-(10**9), 10**9, places=14, allow_nan=False, allow_infinity=False).map(str)),
                max_size=25),
       st.sampled_from([" ", "\n", "  ", "\t", " \n"]), st.sampled_from([0, 8, 12, 16, 20]))
def test_file_parse_equals_the_runtime_token_by_token(tokens, separator, reading_precision):
    from mpc_export.verify.integrity import parse_values

    text = separator.join(tokens) + "\n"
    expected = [runtime_value(t, reading_precision) for t in text.split()]
    parsed = parse_values(text, reading_precision)
    if any(v is None for v in expected) or any(abs(v) >= 2**62 for v in expected):
        assert parsed is None  # the per-token path names the bad token
    else:
        assert parsed is not None and parsed.dtype == np.int64 and parsed.tolist() == expected


def test_file_parse_names_the_first_bad_token(tmp_path):
    from mpc_export.errors import VerificationFailed
    from mpc_export.manifest import FileEntry
    from mpc_export.verify.integrity import parse_file

    (tmp_path / "p.txt").write_text("0.5 1 2.25 1e3 7\n")
    entry = FileEntry("p.txt", "parameter", count=5)
    try:
        parse_file(tmp_path, entry, 12)
    except VerificationFailed as exc:
        assert "element 3" in str(exc) and "1e3" in str(exc)
    else:
        raise AssertionError("1e3 is not a runtime token")
    (tmp_path / "p.txt").write_text("0.5 1 2.25\n")
    assert parse_file(tmp_path, FileEntry("p.txt", "parameter"), 12).tolist() == [2048, 1, 9216]
