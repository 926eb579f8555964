"""The worst cases are sound and tight, and the field rule follows each declared step.

Oracles from outside the package: for every convolution and dense layer of the seed, an input made at
the op's input bound with the sign of the weights of one output (the arrangement that maximises it)
drives the accumulator to exactly sum |w| * bound + |bias| * 2^F, computed here with Python ints from
the quantized weights; the op's reported worst case must equal it (an unsound, halved bound or one that
forgets the bias's 2^F alignment fails). On real images (CIFAR-10) every stage's observed peak stays at or
below its worst case, which verify's report gives per stage. The field rule is checked against each
declared step's own bit length: --total-bits 43 with Winograd declares an 88-bit truncation (88 + kappa
40 + 1 = 129 bits > FANNG's 128-bit prime) and is refused in one line."""

import json

import numpy as np
import pytest

from conftest import DATASET, SEED_MODEL, SHARED, need_shared, run_cli


@pytest.fixture(scope="module")
def seed_graph():
    from mpc_export.fixedpoint import FixedSpec
    from mpc_export.fold import lower_for_mpc
    from mpc_export.load import load_model
    from mpc_export.quantize.graph import quantize_graph

    graph, _ = lower_for_mpc(load_model(SEED_MODEL))
    fx = FixedSpec()
    quantize_graph(graph, fx)
    return graph, fx


def _oracle_accumulator(weight_rows: list[list[int]], biases: list[int], bound: int, frac_bits: int) -> int:
    """max over outputs of sum |w| * bound + |b| * 2^F, in Python ints."""
    return max(sum(abs(w) for w in row) * bound + abs(b) * 2**frac_bits for row, b in zip(weight_rows, biases))


def _conv_input_at_bound(node, bound: int, output: int, sign: int) -> np.ndarray:
    """A (1, C, H, W) input whose window at the centre output position is sign(w[output]) * bound * sign."""
    c, h, w = node.in_shapes[0]
    weight = node.qparams["weight"][output].astype(np.int64)
    k = weight.shape[1]
    x = np.zeros((1, c, h, w), dtype=np.int64)
    top, left = h // 2 - k // 2, w // 2 - k // 2
    x[0, :, top:top + k, left:left + k] = np.sign(weight) * bound * sign
    return x


def test_each_convolution_and_dense_worst_case_is_reached_exactly(seed_graph):
    from mpc_export.reference.run import Trace

    graph, fx = seed_graph
    bound = 2**fx.frac_bits * 7  # any input bound: here 7.0 in real units
    checked = 0
    for node in graph.nodes:
        if node.op not in ("conv_block", "dense"):
            continue
        q = node.qparams
        rows = [[int(v) for v in row.ravel()] for row in q["weight"].astype(object)]
        biases = [int(b) for b in q["bias"]]
        expected = _oracle_accumulator(rows, biases, bound, fx.frac_bits)
        stages, _ = node.spec.worst_case(node, fx, bound)
        assert stages["accumulator"] == expected, node.name
        # an input that reaches it: the output with the largest bound, signs matching its weights and bias
        best = max(range(len(rows)), key=lambda o: sum(abs(w) for w in rows[o]) * bound + abs(biases[o]) * 2**fx.frac_bits)
        sign = 1 if biases[best] >= 0 else -1
        trace = Trace()
        if node.op == "conv_block":
            node.spec.ref_fixed(node, fx, trace, _conv_input_at_bound(node, bound, best, sign))
        else:
            x = (np.sign(q["weight"][best].astype(np.int64)) * bound * sign)[None, :]
            node.spec.ref_fixed(node, fx, trace, x)
        assert trace.peaks[(node.name, "accumulator")] == expected, node.name
        checked += 1
    assert checked == 8


def test_total_bits_43_with_winograd_is_refused_naming_the_step(tmp_path, capsys):
    code, _, err = run_cli(["build", SEED_MODEL, "--out", tmp_path / "o", "--total-bits", "43"], capsys)
    line = " ".join(err.split())
    assert code == 2 and len(err.strip().splitlines()) <= 2, err
    assert "conv_layer_1: its truncation of scaled declares 88 bits" in line and "129 > the 128-bit prime" in line
    assert "--convolution direct" in line
    code, _, err = run_cli(["build", SEED_MODEL, "--out", tmp_path / "o", "--total-bits", "43", "--convolution", "direct",
                            "--json"], capsys)
    assert code == 0, err  # 2K = 86: 86 + 41 = 127 bits fit


@pytest.mark.slow
@pytest.mark.parametrize("model", ["seed", "resnet20", "custresnet"])
def test_observed_peaks_stay_within_the_worst_case_on_1000_images(model, tmp_path, capsys):
    path = SEED_MODEL if model == "seed" else need_shared(SHARED / "fixtures" / f"{model}_cifar10.pth")
    out = tmp_path / "out"
    code, _, err = run_cli(["build", path, "--out", out, "--json"], capsys)
    assert code == 0, err
    code, text, err = run_cli(["verify", out, "--dataset", need_shared(DATASET), "--limit", "1000", "--no-onnx",
                               "--report", tmp_path / "r.json"], capsys)
    assert code == 0, text + err
    stages = json.loads((tmp_path / "r.json").read_text())["overflow"]
    assert stages and all(s["worst_case_bits"] is not None for s in stages)
    for s in stages:
        assert s["observed_bits"] <= s["worst_case_bits"], s  # (a worst case may exceed the limit: real data is what must fit)


def _small_graph(module_cls, tmp_path):
    """module_cls (seeded weights, random BN statistics) exported to ONNX and lowered."""
    from mpc_export.fold import lower_for_mpc
    from mpc_export.load import load_model
    from small_models import export_small

    graph, _ = lower_for_mpc(load_model(export_small(module_cls, tmp_path / f"{module_cls.__name__}.onnx")))
    return graph


def _fixture_graph(name):
    from mpc_export.fold import lower_for_mpc
    from mpc_export.load import load_model

    path = SEED_MODEL if name == "seed" else need_shared(SHARED / "fixtures" / f"{name}_cifar10.pth")
    graph, _ = lower_for_mpc(load_model(path))
    return graph


def _extreme_pixels(graph, count: int, seed: int) -> np.ndarray:
    """Images whose every pixel is 0 or 1 (the ends of the pixel range: after normalisation, the input
    bound with either sign), then one all 0 and one all 1."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 2, size=(count, *graph.input_shape)).astype(np.float64)
    return np.concatenate([pixels, np.zeros((1, *graph.input_shape)), np.ones((1, *graph.input_shape))])


def _protocol(fx, **choices):
    from dataclasses import replace

    return replace(fx, protocol=replace(fx.protocol, **choices))


SMALL_MODELS = ["SmallAvg", "SmallResidual", "SmallStrided", "SmallPools", "SmallVGG", "SmallStridedFlat", "SmallAddFlat",
                "SmallOddKernels"]


@pytest.mark.parametrize("model", SMALL_MODELS + ["seed", "resnet20", "custresnet"])
def test_every_stage_of_every_model_stays_within_its_worst_case_on_extreme_inputs(model, tmp_path):
    """Every stage's peak on images at the ends of the pixel range is at most the worst case the build
    reports for it (quantize_graph's per-stage budget, propagated from the input range)."""
    import small_models
    from mpc_export.fixedpoint import FixedSpec, encode
    from mpc_export.quantize.graph import quantize_graph
    from mpc_export.reference.run import Trace, run_fixed

    graph = _small_graph(getattr(small_models, model), tmp_path) if model in SMALL_MODELS else _fixture_graph(model)
    fx = FixedSpec()
    budget = quantize_graph(graph, fx)
    trace = Trace()
    run_fixed(graph, fx, encode(graph.preprocess(_extreme_pixels(graph, 6, seed=len(model))), fx.frac_bits), trace)
    assert budget.stages
    for stage in budget.stages:
        assert trace.peaks.get((stage.node, stage.stage), 0) <= stage.worst_case, (stage.node, stage.stage)


@pytest.mark.parametrize("model", SMALL_MODELS)
def test_probabilistic_truncations_stay_within_the_propagated_error(model, tmp_path):
    """With simulated TruncPr (the floor or the floor + 1, with the protocol's probability) every node's
    output deviates from the exact floors by at most the error_ulp propagated from the input (0)."""
    import small_models
    from mpc_export.fixedpoint import FixedSpec, encode
    from mpc_export.quantize.graph import quantize_graph
    from mpc_export.reference.run import Trace, run_fixed

    graph = _small_graph(getattr(small_models, model), tmp_path)
    fx = _protocol(FixedSpec(), truncation="probabilistic")
    quantize_graph(graph, fx)
    x = encode(graph.preprocess(np.random.default_rng(7).random((8, *graph.input_shape))), fx.frac_bits)
    floors = run_fixed(graph, fx, x)
    errors: dict[str, int] = {}
    deviated = 0
    for seed in range(4):
        simulated = run_fixed(graph, fx, x, Trace(rng=np.random.default_rng(seed)))
        for node in graph.nodes:
            if node.name not in errors:
                ins = [0] if node.op == "input" else [errors[i] for i in node.inputs]
                errors[node.name] = node.spec.error_ulp(node, fx, *ins)
            deviation = int(np.max(np.abs(np.asarray(simulated[node.name], dtype=object) - np.asarray(floors[node.name], dtype=object))))
            assert deviation <= errors[node.name], (node.name, deviation, errors[node.name])
            deviated += deviation > 0
    assert deviated  # the simulation did round up somewhere


@pytest.mark.parametrize("exact", [True, False])
def test_the_floor_rule_is_the_tightest_sound_bound(exact):
    """Schedule.worst_case's rule for a truncation by 2^s of |v| <= B, against brute force over v."""
    from mpc_export.ops.protocol import Floor, Schedule, Truncation, Weighted

    for bound in list(range(0, 40)) + [255, 256, 257]:
        for shift in range(0, 5):
            schedule = Schedule([Truncation("v", 64, shift, exact, 1, 1)], flow=[Weighted("v"), Floor("v")])
            _, derived = schedule.worst_case({}, [bound])
            results = [v // 2**shift + extra for v in range(-bound, bound + 1) for extra in ((0,) if exact else (0, 1))]
            assert derived == max(abs(r) for r in results), (bound, shift, exact)


def test_a_flow_that_forgets_a_stage_or_an_input_is_refused():
    """The derived bounds cover every declared stage: a schedule whose flow gives one no value, or a
    two-input flow without SumOfInputs, is a declaration error, not a missing bound."""
    from mpc_export.ops.protocol import Comparison, Floor, Hold, Schedule, Stage, Truncation, Weighted

    steps = [Truncation("accumulator", 82, 12, True, 1, 4), Comparison("truncated", 41, 1, 4)]
    complete = Schedule(steps, stored=[Stage("truncated", 40)], flow=[Weighted("accumulator", gain=3), Floor("accumulator"), Hold("truncated")])
    assert complete.worst_case({}, [2**12]) == ({"accumulator": 3 * 2**12, "truncated": 3}, 3)
    with pytest.raises(ValueError, match="truncated"):
        Schedule(steps, flow=[Weighted("accumulator", gain=3), Floor("accumulator")]).worst_case({}, [2**12])
    with pytest.raises(ValueError, match="SumOfInputs"):
        complete.worst_case({}, [1, 2])
