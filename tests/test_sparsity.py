"""--sparsity public: the positions of the non-zero weights are public, read by every player at run time
from one channel, and the convolutions make one secret product per non-zero weight and output position.

Oracles: the pattern is re-derived here from the P0 weight files (read under the runtime's rules) in the
documented layout; the products the program makes are counted by the plaintext interpreter and compared
with a dense direct program of the same model minus one product per zero weight and output position."""

import hashlib
import json

import numpy as np
import pytest

from conftest import run_cli
from runtime_rules import runtime_parse
from small_models import SmallOddKernels, SmallStrided, build_small

from mpc_export.manifest import Manifest
from mpc_export.run.hand_off import hand_off
from mpc_export.backends.mamba.runtime import player_root
from helpers import execute_program


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def _weight_files(out):
    """{layer: quantized OIHW weight} of every convolution, read from its P0 file."""
    manifest = _manifest(out)
    found = {}
    for entry in manifest["files"]:
        if entry["role"] == "parameter" and entry.get("param") == "weight" and len(entry["shape"]) == 4:
            found[entry["node"]] = np.array(runtime_parse((out / entry["path"]).read_text()), dtype=np.int64).reshape(entry["shape"])
    return found


def _products(out):
    manifest, machine = execute_program(out)
    return machine.products // len(manifest["executions"]), machine


@pytest.fixture(params=[SmallStrided, SmallOddKernels], ids=lambda c: c.__name__)
def sparse_and_dense(request, tmp_path, capsys):
    cls = request.param
    (tmp_path / "sparse").mkdir(), (tmp_path / "dense").mkdir()
    sparse = build_small(cls, tmp_path / "sparse", capsys, prune=0.7, extra=["--sparsity", "public", "--convolution", "direct"])
    dense = build_small(cls, tmp_path / "dense", capsys, prune=0.7, extra=["--convolution", "direct"])
    return sparse, dense


def test_the_pattern_file_lists_each_non_zero_weight_of_the_weight_files(sparse_and_dense):
    sparse, _ = sparse_and_dense
    manifest = _manifest(sparse)
    (entry,) = [f for f in manifest["files"] if f["role"] == "sparsity_pattern"]
    assert entry["channel"] == 100048 and entry["path"].endswith("all_parameters/sparsity/P0-sparsity_pattern.txt")
    expected = []
    for layer, weight in _weight_files(sparse).items():  # conv layers in order, (o, c, kh * k + kw) in OIHW order
        kernel = weight.shape[3]
        expected += [v for o, c, kh, kw in zip(*np.nonzero(weight)) for v in (o, c, kh * kernel + kw)]
    text = (sparse / entry["path"]).read_text()
    assert "." not in text  # raw integer tokens
    assert runtime_parse(text) == expected
    assert manifest["protocol"]["sparsity"] == "public"
    assert "sparsity pattern" in manifest["disclosure"]
    assert {"channel": 100048, "path": entry["path"]} in manifest["channel_open_order"]


def test_the_sparse_program_skips_exactly_the_products_by_zero_weights(sparse_and_dense):
    sparse, dense = sparse_and_dense
    sparse_products, machine = _products(sparse)
    dense_products, _ = _products(dense)
    layers = {layer["name"]: layer["shape"] for layer in _manifest(sparse)["layers"]}
    skipped = sum(int(np.sum(weight == 0)) * layers[name][1] * layers[name][2] for name, weight in _weight_files(sparse).items())
    assert skipped > 0
    assert sparse_products == dense_products - skipped
    logits = {tuple(line.split()[1:3]): int(line.split()[3]) for line in machine.printed if line.startswith("LOGIT")}
    for e in _manifest(sparse)["executions"]:
        assert [logits[(str(e["index"]), str(j))] for j in range(len(e["logits"]))] == e["logits"]


def test_a_changed_pattern_is_caught_by_verify_despite_a_matching_hash(tmp_path, capsys):
    out = build_small(SmallStrided, tmp_path, capsys, prune=0.7, extra=["--sparsity", "public"])
    manifest = _manifest(out)
    (entry,) = [f for f in manifest["files"] if f["role"] == "sparsity_pattern"]
    tokens = (out / entry["path"]).read_text().split()
    tokens[2] = str((int(tokens[2]) + 1) % 9)  # the first non-zero weight's tap moved
    data = (" ".join(tokens) + "\n").encode()
    (out / entry["path"]).write_bytes(data)
    entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(["verify", out, "--no-onnx"], capsys)
    assert code == 1 and "P0-sparsity_pattern.txt" in err


def test_every_player_gets_the_pattern_but_only_player_0_the_input(tmp_path, capsys):
    out = build_small(SmallStrided, tmp_path, capsys, prune=0.7, extra=["--sparsity", "public"])
    manifest = _manifest(out)
    runtime, setup, root = tmp_path / "runtime", tmp_path / "setup", tmp_path / "run"
    for folder in (runtime, setup, root / "compile" / "Programs"):
        folder.mkdir(parents=True)
    pattern = next(f["path"] for f in manifest["files"] if f["role"] == "sparsity_pattern")
    for player in (1, 2):
        mine = player_root(root, player, out, hand_off(Manifest.from_dict(manifest)), runtime, setup)
        assert (mine / "Data" / pattern).read_bytes() == (out / pattern).read_bytes()
        assert not any(p.name.endswith(".input.txt") for p in (mine / "Data").rglob("*"))
        assert not any("weights" in p.parts for p in (mine / "Data").rglob("*"))


def test_public_sparsity_with_public_weights_is_one_error_line(tmp_path, capsys):
    with pytest.raises(AssertionError) as failure:
        build_small(SmallStrided, tmp_path, capsys, extra=["--sparsity", "public", "--weights", "public"])
    message = str(failure.value).strip().splitlines()
    assert message[0].startswith("error: --sparsity public needs --weights private")


def test_a_channel_map_giving_the_pattern_channel_to_a_tensor_is_refused(tmp_path, capsys):
    from mpc_export.export.channels import DEFAULT_MAP

    text = DEFAULT_MAP.read_text().replace("reserved = [100048, 100049]\n", "").replace(
        "linear_layer_2_weight = 100047", "linear_layer_2_weight = 100048")
    custom = tmp_path / "map.toml"
    custom.write_text(text)
    with pytest.raises(AssertionError) as failure:
        build_small(SmallStrided, tmp_path, capsys, prune=0.7, extra=["--sparsity", "public", "--channel-map", custom])
    assert "sparsity pattern's channel 100048 is taken (linear_layer_2_weight)" in str(failure.value)
