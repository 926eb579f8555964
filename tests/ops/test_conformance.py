"""Per-op conformance, as onnx's backend/test/case/node/<op>.py: each op's cases live in one file
(``cases_<op>.py``: odd shapes, strides, pools, every mode); this one generic test runs each case's node on
random integer inputs at the input bound (both signs, the bound itself included) and checks:

  - the package's fixed-point kernel (``ref_fixed``) equals the independent integer oracle (``oracle.py``:
    Python ints, the docstring's formula) element for element;
  - every intermediate the kernel records stays within the op's reported worst case for that bound, and
    the output within its output bound;
  - the float kernel on the same (decoded) inputs lies within the op's float tolerance of the result;
  - the node rendered as a MAMBA program (``mamba_case.py``) and run by the plaintext interpreter prints
    the oracle's values and makes exactly the declared protocol calls and products;
  - the real MAMBA compiler requires exactly the declared cost's triples and random bits (slow).

A new op's tests are one ``cases_<op>.py`` and its oracle function; every executable op must have cases."""

import importlib
from pathlib import Path

import numpy as np
import pytest

import oracle
from helpers import compiler_requires

HERE = Path(__file__).parent
CASES = [case for path in sorted(HERE.glob("cases_*.py")) for case in importlib.import_module(path.stem).CASES]
FRAC_BITS = 12


def _node(case, fx):
    from mpc_export.fixedpoint import encode
    from mpc_export.ir import Graph, Node

    node = Node("n", case.op, [f"in{i}" for i in range(len(case.in_shapes))], dict(case.attrs),
                {k: np.asarray(v, dtype=np.float64) for k, v in case.params.items()})
    graph = Graph([node], tuple(case.in_shapes[0]))
    node.in_shapes = [tuple(s) for s in case.in_shapes]
    node.shape = tuple(node.spec.infer_shape(node, node.in_shapes, graph))
    node.qparams = {k: encode(v, fx.frac_bits) for k, v in node.params.items()}
    return node


def _inputs(case, fx, seed):
    rng = np.random.default_rng(seed)
    bound = int(case.bound * 2**fx.frac_bits)
    xs = []
    for shape in case.in_shapes:
        x = rng.integers(-bound, bound + 1, size=(2, *shape), dtype=np.int64)
        x.reshape(-1)[0], x.reshape(-1)[-1] = bound, -bound  # the bound itself, both signs
        xs.append(x)
    return xs, bound


def test_every_executable_op_has_cases():
    from mpc_export.ops import OPS

    covered = {case.op for case in CASES}
    assert {name for name, spec in OPS.items() if spec.executable} <= covered
    assert set(oracle.ORACLES) >= covered


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}: {c.name}" for c in CASES])
def test_the_kernel_equals_the_oracle_within_its_bounds_and_tolerance(case):
    from mpc_export.fixedpoint import FixedSpec, decode
    from mpc_export.reference.run import Trace

    fx = FixedSpec(frac_bits=FRAC_BITS)
    node = _node(case, fx)
    for seed in range(3):
        xs, bound = _inputs(case, fx, seed)
        trace = Trace()
        got = node.spec.ref_fixed(node, fx, trace, *xs)
        want = oracle.ORACLES[case.op](node, node.qparams, fx.frac_bits, *[x.astype(object) for x in xs])
        assert got.shape == want.shape == (2, *node.shape)
        assert np.array_equal(np.asarray(got, dtype=object), want), (case.name, seed)
        stages, out_bound = node.spec.worst_case(node, fx, *[bound] * len(xs))
        for (name, stage), peak in trace.peaks.items():
            assert peak <= stages[stage], (case.name, stage, peak, stages[stage])
        assert max(abs(int(v)) for v in np.asarray(got).ravel()) <= out_bound
        real = [decode(x, fx.frac_bits) for x in xs]
        floats = node.spec.ref_float(node, *real)
        tolerance = node.spec.float_tolerance(node, fx, [0.0] * len(xs), [float(np.max(np.abs(r))) for r in real])
        assert float(np.max(np.abs(decode(np.asarray(got, dtype=np.int64), fx.frac_bits) - floats))) <= tolerance + 1e-12, case.name


def _with_convolution(fx, convolution):
    from dataclasses import replace

    return replace(fx, protocol=replace(fx.protocol, convolution=convolution))


PROGRAM_CASES = [case for case in CASES if case.op != "input"]  # the input's snippet runs in front of every case


@pytest.mark.parametrize("case", PROGRAM_CASES, ids=[f"{c.op}: {c.name}" for c in PROGRAM_CASES])
def test_the_mamba_program_equals_the_oracle_and_makes_the_declared_calls(case, tmp_path):
    """The case's node rendered as a MAMBA program (behind an input node, with --debug; a convolution both
    with Winograd where it applies and direct) and executed by the plaintext interpreter: its printed
    output equals the oracle's, it makes exactly the protocol calls and secret products the node's
    schedule declares, and every protocol input lies in its range."""
    from mamba_case import declared_calls, run_case_program
    from mpc_export.fixedpoint import FixedSpec

    for convolution in ("winograd", "direct") if case.op == "conv_block" else ("winograd",):
        fx = _with_convolution(FixedSpec(frac_bits=FRAC_BITS), convolution)
        xs, _ = _inputs(case, fx, seed=0)
        x = xs[0][0]  # one sample; an add reads it twice
        got, machine, node = run_case_program(case, fx, x, tmp_path / convolution)
        want = oracle.ORACLES[case.op](node, node.qparams, fx.frac_bits, *[x[None].astype(object)] * len(case.in_shapes))
        assert got == [int(v) for v in np.asarray(want).ravel()], (case.name, convolution)
        counts, products = declared_calls(node.spec.schedule(node, fx))
        assert machine.call_counts() == counts, (case.name, convolution)
        assert machine.products == products, (case.name, convolution)
        assert not machine.range_violations, (case.name, convolution)


@pytest.mark.slow
@pytest.mark.parametrize("case", PROGRAM_CASES, ids=[f"{c.op}: {c.name}" for c in PROGRAM_CASES])
def test_the_compiler_requires_what_the_case_declares(case, tmp_path):
    """The real MAMBA compiler's "Program requires" triples and random bits for the case's program equal
    the node's declared schedule priced (the runtime check's own units aside; each protocol's price is
    checked against the same compiler in tests/test_cost.py)."""
    from conftest import COMPILER, need_shared
    from mamba_case import run_case_program
    from mpc_export.backends.mamba import runtime_check
    from mpc_export.fixedpoint import FixedSpec

    need_shared(COMPILER)
    for convolution in ("winograd", "direct") if case.op == "conv_block" else ("winograd",):
        fx = _with_convolution(FixedSpec(frac_bits=FRAC_BITS), convolution)
        xs, _ = _inputs(case, fx, seed=0)
        _, _, node = run_case_program(case, fx, xs[0][0], tmp_path / convolution)  # writes the program
        declared = node.spec.schedule(node, fx).cost(fx.kappa)
        check = runtime_check.cost()
        program = next((tmp_path / convolution / "program").iterdir())
        assert compiler_requires(program) == (declared["triples"] + check["triples"], declared["bits"] + check["bits"]), (case.name, convolution)
