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
