"""`mpc-export build` on the seed fixture: files, integers, channels and order, checked against
independent oracles (torch's own modules, the runtime's parse rules re-implemented, the seed table)."""

import hashlib
import json
import math

import numpy as np
import torch

from conftest import SEED_MODEL
from runtime_rules import runtime_parse
from helpers import FANNG_OPEN_ORDER

# The seed channel table (scale-mamba-facts.md), written out here rather than read from the project.
SEED_TABLE = {
    **{f"conv_layer_{i}_bias": 100019 + i for i in range(1, 7)},
    "linear_layer_1_bias": 100026, "linear_layer_2_bias": 100027,
    **{f"bn_layer_{i}_new_beta": 100027 + i for i in range(1, 7)},
    **{f"bn_layer_{i}_new_gamma": 100033 + i for i in range(1, 7)},
    **{f"conv_layer_{i}_weight": 100039 + i for i in range(1, 7)},
    "linear_layer_1_weight": 100046, "linear_layer_2_weight": 100047,
}

def c_round(x: np.ndarray) -> np.ndarray:
    return np.array([int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1) for v in np.ravel(x)], dtype=np.int64)


def expected_tensors(frac_bits=12):
    """The intended integers, straight from torch modules: fold via BatchNorm2d's own eval output."""
    state = torch.load(SEED_MODEL, map_location="cpu", weights_only=True)
    convs, linears = [0, 4, 8, 12, 16, 20], [25, 28]
    out = {}
    for i, c in enumerate(convs, start=1):
        out[f"conv_layer_{i}_weight"] = state[f"network.{c}.weight"].double().numpy()
        out[f"conv_layer_{i}_bias"] = state[f"network.{c}.bias"].double().numpy()
        bn = torch.nn.BatchNorm2d(state[f"network.{c + 1}.weight"].numel()).double().eval()
        bn.load_state_dict({k.split(".")[-1]: v for k, v in state.items() if k.startswith(f"network.{c + 1}.")})
        with torch.no_grad():
            n = bn.num_features
            beta = bn(torch.zeros(1, n, 1, 1, dtype=torch.float64)).reshape(n).numpy()  # BN(0) = new_beta
            gamma = bn(torch.ones(1, n, 1, 1, dtype=torch.float64)).reshape(n).numpy() - beta  # BN(1) - BN(0)
        out[f"bn_layer_{i}_new_gamma"], out[f"bn_layer_{i}_new_beta"] = gamma, beta
    for i, l in enumerate(linears, start=1):
        out[f"linear_layer_{i}_weight"] = state[f"network.{l}.weight"].double().numpy()
        out[f"linear_layer_{i}_bias"] = state[f"network.{l}.bias"].double().numpy()
    return {k: c_round(v * 2**frac_bits) for k, v in out.items()}, {k: v.shape for k, v in out.items()}


def test_every_parameter_file_parses_to_the_intended_integers(seed_build):
    out, manifest = seed_build
    intended, shapes = expected_tensors()
    params = [f for f in manifest["files"] if f["role"] == "parameter"]
    assert {f["tensor"] for f in params} == set(SEED_TABLE)
    for f in params:
        values = runtime_parse((out / f["path"]).read_text(), 12)
        want = intended[f["tensor"]]
        # rounding of new_gamma computed two ways may differ by one unit at an exact .5 tie; nothing else
        tol = 1 if "new_" in f["tensor"] else 0
        assert len(values) == want.size == f["count"], f["tensor"]
        assert np.max(np.abs(np.array(values) - want)) <= tol, f["tensor"]
        assert list(f["shape"]) == list(shapes[f["tensor"]])


def test_channels_counts_and_folders_match_the_seed_table(seed_build):
    out, manifest = seed_build
    for f in manifest["files"]:
        if f["role"] != "parameter":
            continue
        assert f["channel"] == SEED_TABLE[f["tensor"]]
        folder = {"weight": "weights", "bias": "bias", "new_gamma": "new_gamma", "new_beta": "new_beta"}[f["tensor"].rsplit("_", 1)[-1] if not f["tensor"].endswith(("new_gamma", "new_beta")) else "new_" + f["tensor"].rsplit("_", 1)[-1]]
        assert f["path"] == f"PrunedResnetData/all_parameters/{folder}/P0-{f['tensor']}.txt"
        assert (out / f["path"]).read_text().count("\n") == 1


def test_open_order_and_io_answers_follow_fanngs_program(seed_build):
    out, manifest = seed_build
    executions = len(manifest["executions"])
    order = [e["channel"] for e in manifest["channel_open_order"]]
    assert order == FANNG_OPEN_ORDER + [90050 + n for n in range(1, executions)]
    answers = (out / "io_answers.txt").read_text().splitlines()
    assert answers == [f"i {e['path']}" for e in manifest["channel_open_order"]]
    assert answers[0] == "i PrunedResnetData/Inputs/Execution_0/P0-Conv_layer_1.input.txt"


def test_input_files_hold_the_encoded_images(seed_build):
    out, manifest = seed_build
    for e in manifest["executions"]:
        values = runtime_parse((out / e["path"]).read_text(), 12)
        assert e["channel"] == 90050 + e["index"]
        assert e["path"] == f"PrunedResnetData/Inputs/Execution_{e['index']}/P0-Conv_layer_1.input.txt"
        if e["source"].endswith(".pt"):
            image = torch.load(e["source"], weights_only=True).double().numpy()
            assert values == list(c_round(image * 4096))
        assert len(values) == 3 * 32 * 32


def test_manifest_hashes_and_fields(seed_build):
    out = json.loads((seed_build[0] / "manifest.json").read_text())
    for f in out["files"]:
        data = (seed_build[0] / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        for key in ("frac_bits", "total_bits", "reading_precision", "number_format"):
            assert key in f
    assert out["model"]["sha256"] == hashlib.sha256(SEED_MODEL.read_bytes()).hexdigest()
    assert out["model"]["parameters"] == 1_259_242


def test_expected_outputs_match_the_float_model_closely(seed_build):
    """The expected logits written by build are within a few quantization steps of PyTorch's float model
    run on the same (decoded) input file: an oracle outside the fixed-point code (a kernel that doubled an
    output would be caught here)."""
    import torch

    from mpc_export.load.torch_models import torch_module

    out, manifest = seed_build
    module = torch_module("pruned_resnet", SEED_MODEL).double().eval()
    for e in manifest["executions"]:
        rel = f"PrunedResnetData/Outputs/Execution_{e['index']}/P0-linear_layer_2.output.txt"
        logits = np.array(runtime_parse((out / rel).read_text(), 12)) / 4096
        image = np.array(runtime_parse((out / e["path"]).read_text(), 12), dtype=np.float64).reshape(1, 3, 32, 32) / 4096
        with torch.no_grad():
            reference = module(torch.from_numpy(image)).numpy()[0]
        assert logits.shape == (10,)
        assert np.max(np.abs(logits - reference)) < 0.1, (logits, reference)  # measured 0.054 on logits up to 16
        assert int(np.argmax(logits)) == e["predicted_class"] == int(np.argmax(reference))


def test_integer_format_writes_raw_integers(tmp_path):
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.fixedpoint import FixedSpec

    manifest = build(BuildOptions(model=SEED_MODEL, out=tmp_path / "o", number_format="integer", fx=FixedSpec(frac_bits=14, total_bits=41)))
    intended, _ = expected_tensors(frac_bits=14)
    f = next(f for f in manifest["files"] if f["tensor"] == "conv_layer_3_weight")
    text = (tmp_path / "o" / f["path"]).read_text()
    assert "." not in text
    assert runtime_parse(text, 12) == list(intended["conv_layer_3_weight"])
