"""`mpc-export verify` on the seed fixture: every layer within its derived tolerance, argmax agreement on
CIFAR-10, tampering caught with the file named, overflow reported, MPC logs compared."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from conftest import DATASET, SEED_MODEL, need_shared, run_cli


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory):
    from mpc_export.pipeline.build import BuildOptions, build

    out = tmp_path_factory.mktemp("v") / "seed"
    build(BuildOptions(model=SEED_MODEL, out=out))
    return out


def copy_build(seed_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(seed_dir, target)
    return target


def test_seed_verifies_every_layer_with_both_oracles(seed_dir, tmp_path, capsys):
    report_path, plot = tmp_path / "r.json", tmp_path / "p.png"
    code, out, err = run_cli(["verify", seed_dir, "--report", report_path, "--plot", plot], capsys)
    assert code == 0, out + err
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["agreement"] == 1.0
    names = [r["name"] for r in report["layers"]]
    assert names[1:] == [f"conv_layer_{i}" for i in range(1, 7)] + ["linear_layer_1", "linear_layer_2"]
    for row in report["layers"]:
        for key in ("name", "max_abs_err", "max_ulp_err", "bound_ulp", "tolerance", "ok"):
            assert key in row
        assert row["ok"] and row["max_abs_err"] <= row["tolerance"]
        if row["op"] != "input":  # onnxruntime (float32) exposes every layer and agrees with PyTorch
            assert row["onnx_vs_torch"] is not None and row["onnx_vs_torch"] < 1e-3
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_dataset_agreement_on_cifar10(seed_dir, tmp_path, capsys):
    need_shared(DATASET)
    report_path = tmp_path / "r.json"
    code, out, err = run_cli(["verify", seed_dir, "--dataset", DATASET, "--limit", "500", "--report", report_path], capsys)
    assert code == 0, out + err
    report = json.loads(report_path.read_text())
    assert report["images"] == 500
    assert report["agreement"] >= 0.995
    assert abs(report["fixed_acc"] - report["float_acc"]) <= 0.01
    assert all(r["ok"] for r in report["layers"])
    # onnxruntime checks the first batch by default (PyTorch every image), and says so; on request, all
    assert report["onnx_images"] == 250 and "first 250 image(s)" in " ".join(out.split())
    assert all(r["onnx_max_abs_err"] is not None for r in report["layers"][1:])
    code, out, err = run_cli(["verify", seed_dir, "--dataset", DATASET, "--limit", "500", "--onnx-images", "500",
                              "--report", report_path], capsys)
    everything = json.loads(report_path.read_text())
    assert code == 0 and everything["onnx_images"] == 500 and "first 250" not in out, out + err
    for first, full in zip(report["layers"][1:], everything["layers"][1:]):  # a maximum over a superset
        assert full["onnx_max_abs_err"] >= first["onnx_max_abs_err"] and full["max_abs_err"] == first["max_abs_err"]
    print(f"agreement {report['agreement']:.4f} float {report['float_acc']:.4f} fixed {report['fixed_acc']:.4f}")


def _flip_digit(path, index_from_end=3):
    text = path.read_text()
    # change one digit of the first token that has enough digits
    token_match = next(m for m in re.finditer(r"-?\d+\.\d{4,}", text))
    pos = token_match.end() - index_from_end
    digit = text[pos]
    text = text[:pos] + ("1" if digit != "1" else "2") + text[pos + 1:]
    path.write_text(text)


@pytest.mark.parametrize("rel", [
    "PrunedResnetData/all_parameters/weights/P0-conv_layer_4_weight.txt",
    "PrunedResnetData/all_parameters/bias/P0-linear_layer_2_bias.txt",
    "PrunedResnetData/all_parameters/new_gamma/P0-bn_layer_1_new_gamma.txt",
    "PrunedResnetData/all_parameters/new_beta/P0-bn_layer_6_new_beta.txt",
    "PrunedResnetData/Inputs/Execution_0/P0-Conv_layer_1.input.txt",
    "PrunedResnetData/Outputs/Execution_0/P0-conv_layer_3.output.txt",
])
def test_one_changed_digit_is_caught_and_named(rel, seed_dir, tmp_path, capsys):
    target = copy_build(seed_dir, tmp_path)
    _flip_digit(target / rel)
    code, out, err = run_cli(["verify", target, "--no-onnx"], capsys)
    assert code == 1
    assert rel in err


def test_edit_with_updated_manifest_is_caught_by_element(seed_dir, tmp_path, capsys):
    """Even if the manifest's hash is updated, the parameter no longer equals the model quantized."""
    import hashlib

    target = copy_build(seed_dir, tmp_path)
    rel = "PrunedResnetData/all_parameters/weights/P0-conv_layer_2_weight.txt"
    path = target / rel
    tokens = path.read_text().split()
    tokens[7] = "0.5" if tokens[7] != "0.5" else "0.25"
    path.write_text(" ".join(tokens) + "\n")
    manifest = json.loads((target / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["path"] == rel:
            f["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (target / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run_cli(["verify", target, "--no-onnx"], capsys)
    assert code == 1
    assert rel in err and "element 7" in err and "channel 100041" in err


def test_invalid_token_is_named_with_position(seed_dir, tmp_path, capsys):
    target = copy_build(seed_dir, tmp_path)
    rel = "PrunedResnetData/all_parameters/bias/P0-conv_layer_1_bias.txt"
    tokens = (target / rel).read_text().split()
    tokens[3] = "1e-3"
    (target / rel).write_text(" ".join(tokens) + "\n")
    code, out, err = run_cli(["verify", target, "--no-onnx"], capsys)
    assert code == 1 and rel in err and "element 3" in err


def test_overflow_is_reported_not_wrapped(tmp_path, capsys):
    need_shared(DATASET)
    state = torch.load(SEED_MODEL, map_location="cpu", weights_only=True)
    state["network.28.weight"] = state["network.28.weight"] * 64  # logits 64x larger
    model = tmp_path / "big.pth"
    torch.save(state, model)
    zero = tmp_path / "zero.npy"
    np.save(zero, np.zeros((3, 32, 32)))
    out = tmp_path / "out"
    code, _, err = run_cli(["build", model, "--out", out, "--total-bits", "24", "--input", zero], capsys)
    assert code == 0, err
    code, _, err = run_cli(["verify", out, "--no-onnx", "--dataset", DATASET, "--limit", "50"], capsys)
    assert code == 1
    assert "overflow at linear_layer_2" in err


def test_mpc_log_of_an_exact_build_must_equal_the_reference(seed_dir, tmp_path, capsys):
    """Exact truncation (the default): 0 ulp required; one logit off by one is named."""
    manifest = json.loads((seed_dir / "manifest.json").read_text())
    assert manifest["protocol"] == {"truncation": "exact", "convolution": "winograd", "weights": "private", "sparsity": "private",
                                    "comparison_limits": {}}
    logits = manifest["executions"][0]["logits"]
    log = tmp_path / "run.log"
    log.write_text("".join(f"noise\nLOGIT 0 {j} {v}\n" for j, v in enumerate(logits)))
    code, out, err = run_cli(["verify", seed_dir, "--no-onnx", "--mpc-log", log], capsys)
    assert code == 0, err
    assert "max |MPC - reference| = 0 ulp, bound 0 ulp" in " ".join(out.split())
    off = tmp_path / "off.log"
    off.write_text("".join(f"LOGIT 0 {j} {v + (j == 7)}\n" for j, v in enumerate(logits)))
    code, out, err = run_cli(["verify", seed_dir, "--no-onnx", "--mpc-log", off], capsys)
    assert code == 1
    assert f"execution 0, logit 7: MPC {logits[7] + 1}, reference {logits[7]}" in err


def test_mpc_log_of_a_probabilistic_build_within_bound_and_outside(tmp_path, capsys):
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.fixedpoint import FixedSpec, Protocol

    out_dir = tmp_path / "prob"
    manifest = build(BuildOptions(model=SEED_MODEL, out=out_dir, fx=FixedSpec(protocol=Protocol("probabilistic"))))
    assert manifest["protocol"]["truncation"] == "probabilistic"
    logits = manifest["executions"][0]["logits"]
    log = tmp_path / "run.log"
    log.write_text("".join(f"noise\nLOGIT 0 {j} {v + (j % 2)}\n" for j, v in enumerate(logits)))
    code, out, err = run_cli(["verify", out_dir, "--no-onnx", "--mpc-log", log, "--simulate-mpc", "2"], capsys)
    assert code == 0, err
    assert "MPC log" in out and "largest simulated value" in " ".join(out.split())
    bad = tmp_path / "bad.log"
    bad.write_text("".join(f"LOGIT 0 {j} {v * 2 + 10**15}\n" for j, v in enumerate(logits)))
    code, out, err = run_cli(["verify", out_dir, "--no-onnx", "--mpc-log", bad], capsys)
    assert code == 1

@pytest.mark.parametrize("threads", [1, 2])
def test_layer_table_statistics_equal_numpy_over_any_memory_layout(threads):
    """The per-layer max / mean |reference / 2^F - float| and peak |float| of LayerTable, over two batches,
    equal numpy's on the logical arrays: an NCHW reference over NHWC memory against float32 in NCHW
    memory, a dense layer, and a reference beyond int64 (object integers)."""
    from types import SimpleNamespace

    from mpc_export.fixedpoint import FixedSpec
    from mpc_export.verify.layers import LayerTable

    f = 12
    rng = np.random.default_rng(7)
    nodes = [SimpleNamespace(name=name, op=op, origin=[name], inputs=[]) for name, op in
             [("input", "input"), ("conv", "conv_block"), ("dense", "dense"), ("huge", "dense")]]
    table = LayerTable(SimpleNamespace(nodes=nodes), FixedSpec(frac_bits=f))
    want = {node.name: [0.0, 0.0, 0, 0.0] for node in nodes}  # max, sum, count, peak
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for batch in range(2):
            x_real = rng.normal(size=(3, 2, 5, 5))
            conv = np.ascontiguousarray(rng.integers(-2**20, 2**20, size=(3, 5, 5, 4))).transpose(0, 3, 1, 2)  # NHWC memory
            fixed = {"input": np.round(x_real * 2**f).astype(np.int64), "conv": conv,
                     "dense": rng.integers(-2**30, 2**30, size=(3, 7)),
                     "huge": np.array([[2**70 + batch, -(2**66)]], dtype=object)}
            floats = {"conv": rng.normal(scale=200, size=(3, 4, 5, 5)).astype(np.float32),
                      "dense": rng.normal(scale=2e5, size=(3, 7)).astype(np.float32),
                      "huge": np.array([[2.0**58, -(2.0**54)]], dtype=np.float32)}
            table.add(fixed, floats, None, x_real)
            for name in want:
                real = [float(v) / 2**f for v in fixed[name].reshape(-1)]
                other = (x_real if name == "input" else floats[name]).reshape(-1).astype(np.float64)
                differences = np.abs(np.array(real) - other)
                w = want[name]
                w[0], w[1], w[2], w[3] = max(w[0], differences.max()), w[1] + differences.sum(), w[2] + differences.size, max(w[3], np.abs(other).max())
    finally:
        torch.set_num_threads(previous)
    for name, (largest, total, count, peak) in want.items():
        stats = table.stats[name]
        assert stats.max_abs_err == largest and stats.peak == peak and stats.count == count
        assert stats.sum_abs_err == pytest.approx(total, rel=1e-12)
