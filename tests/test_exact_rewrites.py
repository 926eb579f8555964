"""Exact rewrites instead of refusals: a BatchNorm1d next to a linear layer folded into it, padding='same'
with odd kernels as explicit padding, a trailing Softmax/LogSoftmax dropped with a notice, a Pad whose
value is a one-element tensor, Gemm with alpha, beta and a broadcast bias. Each model (random weights,
randomised BatchNorm statistics), exported by both torch exporters where torch writes the form, builds
and verifies on CIFAR-10 images: every layer inside its tolerance against PyTorch's float model and
onnxruntime on the user's own file (the oracle), >= 99 % argmax agreement. Forms with no exact rewrite
are refused at build in one line."""

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import helper, numpy_helper

from conftest import DATASET, need_shared, run_cli
from small_models import OptionANet, randomise_batchnorm

IMAGES = "500"


class TrailingSoftmax(nn.Module):
    def __init__(self, log=False):
        super().__init__()
        self.log = log
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 4)
        logits = self.fc(torch.flatten(x, 1))
        return F.log_softmax(logits, dim=1) if self.log else F.softmax(logits, dim=1)


class SamePadding(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding="same"), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 5, padding="same"), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(torch.flatten(x, 1))


class LinearBatchNorm1d(nn.Module):
    """BatchNorm1d after a linear layer (before its ReLU), and one right before the last linear layer."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc1, self.bn1 = nn.Linear(8 * 8 * 8, 32), nn.BatchNorm1d(32)
        self.bn2, self.fc2 = nn.BatchNorm1d(32), nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 4)
        x = F.relu(self.bn1(self.fc1(torch.flatten(x, 1))))
        return self.fc2(self.bn2(x))


def _export(model, path, dynamo):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(randomise_batchnorm(model).eval(), torch.zeros(1, 3, 32, 32), str(path), dynamo=dynamo)
    return path


def _build_and_verify(path, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["build", path, "--out", out, "--json"], capsys)
    assert code == 0, err
    code, text, err = run_cli(["verify", out, "--dataset", need_shared(DATASET), "--limit", IMAGES, "--min-agreement", "99",
                               "--report", tmp_path / "report.json"], capsys)
    assert code == 0, text + err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["agreement"] >= 0.99 and all(row["ok"] for row in report["layers"])
    assert report["onnx_images"] > 0  # onnxruntime ran the user's own file
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript_exporter", "dynamo_exporter"])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_a_trailing_softmax_is_dropped_with_a_notice(log, dynamo, tmp_path, capsys):
    torch.manual_seed(1)
    manifest = _build_and_verify(_export(TrailingSoftmax(log), tmp_path / "m.onnx", dynamo), tmp_path, capsys)
    kind = "LogSoftmax" if log else "Softmax"
    assert manifest["notices"] == [f"the trailing {kind} was dropped (it does not change the argmax): the secure run "
                                   "outputs the logits before it"]
    code, text, _ = run_cli(["build", tmp_path / "m.onnx", "--out", tmp_path / "again"], capsys)
    assert code == 0 and f"the trailing {kind} was dropped" in " ".join(text.split())


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript_exporter", "dynamo_exporter"])
def test_padding_same_builds_as_explicit_padding(dynamo, tmp_path, capsys):
    torch.manual_seed(2)
    _build_and_verify(_export(SamePadding(), tmp_path / "m.onnx", dynamo), tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript_exporter", "dynamo_exporter"])
def test_batchnorm1d_next_to_a_linear_layer_is_folded_into_it(dynamo, tmp_path, capsys):
    torch.manual_seed(3)
    manifest = _build_and_verify(_export(LinearBatchNorm1d(), tmp_path / "m.onnx", dynamo), tmp_path, capsys)
    assert [layer["op"] for layer in manifest["layers"]].count("dense") == 2


def _option_a_with_vector_pad_value(path):
    """The option-A shortcut net, its Pad's constant value rewritten as a one-element 1-D tensor (as some
    torch versions export it)."""
    torch.manual_seed(4)
    _export(OptionANet("flatten", True), path, False)  # its global pool takes any size: exported at 32 x 32
    model = onnx.load(str(path))
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    assert pads
    for number, node in enumerate(pads):
        name = f"pad_value_vector_{number}"
        model.graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.float32), name))
        inputs = list(node.input) + [""] * (3 - len(node.input))
        inputs[2] = name
        del node.input[:]
        node.input.extend(inputs[:3])
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
def test_a_pad_value_given_as_a_one_element_tensor(tmp_path, capsys):
    path = _option_a_with_vector_pad_value(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    assert any(i.dims == [1] for i in model.graph.initializer if i.name.startswith("pad_value_vector"))
    _build_and_verify(path, tmp_path, capsys)


def _gemm_model(path, alpha, beta, bias_shape, trans_b):
    """Flatten + Gemm on a 3 x 4 x 4 input, weight B (transB as given), bias C of ``bias_shape``."""
    rng = np.random.default_rng(5)
    b_matrix = rng.normal(size=(10, 48) if trans_b else (48, 10)).astype(np.float32) * 0.2
    c = rng.normal(size=bias_shape).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "B", "C"], ["y"], alpha=alpha, beta=beta, transB=trans_b)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])],
                              [numpy_helper.from_array(b_matrix, "B"), numpy_helper.from_array(c, "C")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("alpha, beta, bias_shape, trans_b", [(0.5, 2.0, (10,), 0), (1.0, 1.0, (1, 10), 1), (2.0, 0.25, (1,), 0)])
def test_gemm_in_every_legal_form_builds_and_matches_onnxruntime(alpha, beta, bias_shape, trans_b, tmp_path, capsys):
    path = _gemm_model(tmp_path / "g.onnx", alpha, beta, bias_shape, trans_b)
    image = tmp_path / "img.npy"
    np.save(image, np.random.default_rng(6).random((3, 4, 4)))
    out = tmp_path / "out"
    code, _, err = run_cli(["build", path, "--out", out, "--input", image, "--json"], capsys)
    assert code == 0, err
    code, text, err = run_cli(["verify", out], capsys)  # onnxruntime runs g.onnx itself: alpha, beta, transB its way
    assert code == 0, text + err


def test_forms_without_an_exact_rewrite_are_refused_in_one_line(tmp_path, capsys):
    class MidSoftmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(48, 10), nn.Linear(10, 10)

        def forward(self, x):
            return self.fc2(F.softmax(self.fc1(torch.flatten(x, 1)), dim=1))

    class EvenSame(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 2, padding="same"), nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(x), 1))

    for model, text in ((MidSoftmax(), "only a trailing Softmax"), (EvenSame(), "unevenly")):
        path = tmp_path / "m.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), torch.zeros(1, 3, 4, 4), str(path), dynamo=False)
        code, _, err = run_cli(["build", path, "--out", tmp_path / "o"], capsys)
        assert code == 2 and text in err and len(err.strip().splitlines()) == 1, err


class _Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1))


@pytest.mark.parametrize("batch, dtype", [(4, torch.float32), (1, torch.float16)])
def test_a_fixed_batch_above_one_and_a_float16_model_verify(batch, dtype, tmp_path, capsys):
    """onnxruntime runs the user's file as it is: B images at a time, in its own input type."""
    torch.manual_seed(7)
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Small().to(dtype).eval(), torch.zeros(batch, 3, 32, 32, dtype=dtype), str(path), dynamo=False)
    out = tmp_path / "out"
    images = [tmp_path / f"i{n}.npy" for n in range(5)]  # 5: not a multiple of 4
    for n, image in enumerate(images):
        np.save(image, np.random.default_rng(n).random((3, 32, 32)))
    code, _, err = run_cli(["build", path, "--out", out, "--json", *[a for i in images for a in ("--input", i)]], capsys)
    assert code == 0, err
    code, text, err = run_cli(["verify", out], capsys)
    assert code == 0, text + err


def test_a_float64_model_is_refused_at_build_in_one_line(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Small().double().eval(), torch.zeros(1, 3, 32, 32, dtype=torch.float64), str(path), dynamo=False)
    code, _, err = run_cli(["build", path, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "is DOUBLE; export the model in float32" in err and len(err.strip().splitlines()) == 1, err
