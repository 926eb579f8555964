"""ONNX files as both torch.onnx exporters write them load, and compute what onnxruntime computes.

Each small CNN is exported in tmp_path by the TorchScript exporter (with and without constant folding,
batch fixed at 1 or symbolic) and by the dynamo exporter (optimised or not, batch fixed or symbolic).
Their forwards use what real CIFAR-10 code uses: ``x.view(x.size(0), -1)``, ``x.reshape(x.size(0), -1)``,
``torch.flatten(x, 1)``, ``F.adaptive_avg_pool2d(x, 1)`` and the ResNet-20 option-A shortcut
``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`` with ``planes`` a number or read from
the tensor's size (a Shape/Gather/Div/Concat chain in the graph). The oracle is onnxruntime on the same
file; the graph under test is the loaded model lowered for MPC and run in float64.

Also: constant folding is bounded (a folded constant past the limit and a graph past the node limit
are one line each, before anything is allocated), and every unsupported node is listed at once with its
reason and, where one exists, its rewrite (``check_model`` returns them as a list)."""

import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli
from small_models import OptionANet, randomise_batchnorm

INPUT_SIZE = 8


class PlainNet(torch.nn.Module):
    """conv + BN + ReLU, conv + 2x2 max pool + BN + ReLU (custResNet's order), ``x.view(x.size(0), -1)``,
    linear + ReLU, linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6)
        self.conv2, self.bn2 = torch.nn.Conv2d(6, 6, 3, padding=1), torch.nn.BatchNorm2d(6)
        self.fc1, self.fc2 = torch.nn.Linear(6 * 4 * 4, 12), torch.nn.Linear(12, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(F.max_pool2d(self.conv2(x), 2)))
        return self.fc2(F.relu(self.fc1(x.view(x.size(0), -1))))


def _with_random_statistics(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and BatchNorm statistics (so a dropped BN would show), in eval mode."""
    torch.manual_seed(seed)
    return randomise_batchnorm(model, mean=0.3, bias=0.2).eval()


EXPORTERS = {
    # name: (dynamo, constant folding / optimisation, symbolic batch)
    "torchscript_folded": (False, True, False),
    "torchscript_unfolded": (False, False, False),
    "torchscript_folded_dynamic_batch": (False, True, True),
    "torchscript_unfolded_dynamic_batch": (False, False, True),
    "dynamo": (True, True, False),
    "dynamo_unoptimised": (True, False, False),
    "dynamo_dynamic_batch": (True, True, True),
}


def export(model: torch.nn.Module, path, exporter: str):
    dynamo, folding, dynamic_batch = EXPORTERS[exporter]
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            shapes = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic_batch else None
            torch.onnx.export(model, (example,), str(path), dynamo=True, optimize=folding, dynamic_shapes=shapes)
        else:
            axes = {"x": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(model, example, str(path), dynamo=False, do_constant_folding=folding,
                              input_names=["x"], dynamic_axes=axes)
    return path


def onnxruntime_logits(path, images: np.ndarray) -> np.ndarray:
    """onnxruntime's outputs for a batch (N, C, H, W), one image at a time when the file fixes batch 1."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    if feed.shape[0] == 1:
        return np.concatenate([session.run(None, {feed.name: image[None].astype(np.float32)})[0] for image in images])
    return session.run(None, {feed.name: images.astype(np.float32)})[0]


def loaded_logits(path, images: np.ndarray) -> np.ndarray:
    """The loaded model, lowered for MPC, run in float64: the last node's outputs (N, classes)."""
    from mpc_export.fold import lower_for_mpc
    from mpc_export.load import load_model
    from mpc_export.reference.run import run_float

    graph, _ = lower_for_mpc(load_model(path))
    return run_float(graph, images)[graph.nodes[-1].name]


def assert_same_logits(path, seed: int = 0) -> None:
    images = np.random.default_rng(seed).uniform(-1.0, 1.0, (4, 3, INPUT_SIZE, INPUT_SIZE))
    expected = onnxruntime_logits(path, images)
    got = loaded_logits(path, images)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(expected).max())))


@pytest.mark.parametrize("exporter", list(EXPORTERS))
@pytest.mark.parametrize("flatten_kind", ["view", "reshape", "flatten"])
def test_option_a_net_from_every_exporter_computes_what_onnxruntime_computes(exporter, flatten_kind, tmp_path):
    model = _with_random_statistics(OptionANet(flatten_kind, planes_from_size=False), seed=1)
    assert_same_logits(export(model, tmp_path / "net.onnx", exporter))


@pytest.mark.parametrize("exporter", ["torchscript_folded", "torchscript_unfolded_dynamic_batch", "dynamo_dynamic_batch"])
def test_a_pad_computed_from_the_tensor_size_is_evaluated(exporter, tmp_path):
    model = _with_random_statistics(OptionANet("view", planes_from_size=True), seed=2)
    path = export(model, tmp_path / "net.onnx", exporter)
    if exporter.startswith("torchscript"):  # the file really computes the pads (the test must see the chain)
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert {"Shape", "Gather", "Concat"} <= ops, ops
    assert_same_logits(path, seed=3)


@pytest.mark.parametrize("exporter", ["torchscript_unfolded", "torchscript_folded_dynamic_batch", "dynamo_unoptimised"])
def test_plain_net_with_view_computes_what_onnxruntime_computes(exporter, tmp_path):
    assert_same_logits(export(_with_random_statistics(PlainNet(), seed=4), tmp_path / "plain.onnx", exporter), seed=5)


def test_the_loaded_graph_keeps_the_option_a_shortcut_and_drops_the_shape_arithmetic(tmp_path):
    from mpc_export.load import load_model

    model = _with_random_statistics(OptionANet("view", planes_from_size=True), seed=6)
    graph = load_model(export(model, tmp_path / "net.onnx", "torchscript_unfolded_dynamic_batch"))
    ops = [n.op for n in graph.nodes]
    assert ops.count("channel_pad") == 1 and ops.count("flatten") == 1 and ops.count("batchnorm") == 3, ops
    pad = next(n for n in graph.nodes if n.op == "channel_pad")
    assert (pad.attrs["pad_lo"], pad.attrs["pad_hi"]) == (4, 4)


# ---- bounds on folding


def _graph_with_constant_of_shape(dims: list[int]) -> onnx.ModelProto:
    """x (1, 3, 8, 8) -> Relu -> Add(a ConstantOfShape of ``dims``, broadcast) -> output."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("ConstantOfShape", ["dims"], ["big"], name="huge"),
             helper.make_node("Add", ["r", "big"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])],
                              [numpy_helper.from_array(np.array(dims, np.int64), "dims")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_folded_constant_past_the_limit_is_one_line_before_it_is_allocated(tmp_path, capsys):
    path = tmp_path / "huge.onnx"
    onnx.save(_graph_with_constant_of_shape([2**40, 1, 1, 1]), str(path))  # 2^40 values: allocating would fail
    code, _, err = run_cli(["build", path, "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "ConstantOfShape" in err and "'huge'" in err and f"{2**40:,}" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_graph_past_the_node_limit_is_one_line(tmp_path, capsys):
    from mpc_export.load.onnx_frontend import MAX_NODES

    count = MAX_NODES + 1
    nodes = [helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"]) for i in range(count)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(f"t{count}", TensorProto.FLOAT, [1, 3, 8, 8])])
    path = tmp_path / "long.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    code, _, err = run_cli(["build", path, "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{count:,} nodes" in err, err


# ---- every problem at once, with its rewrite


class Unsupported(torch.nn.Module):
    """A conv net using Sigmoid, Tanh, LeakyReLU, a dilated max pool and a trailing Softmax (which is
    dropped, not refused: tests/test_exact_rewrites.py)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2, dilation=2)
        self.fc = torch.nn.Linear(4 * 3 * 3, 10)

    def forward(self, x):
        x = F.leaky_relu(torch.tanh(torch.sigmoid(self.conv(x))), 0.1)
        return torch.softmax(self.fc(torch.flatten(self.pool(x), 1)), dim=1)


def test_every_unsupported_node_is_listed_with_its_rewrite(tmp_path, capsys):
    from mpc_export.load.model import check_model

    path = export(Unsupported().eval(), tmp_path / "odd.onnx", "torchscript_folded")
    problems = check_model(path)
    expected = {"Sigmoid": "ReLU", "Tanh": "ReLU", "LeakyRelu": "ReLU", "MaxPool": "dilation"}
    for op, hint in expected.items():
        lines = [p for p in problems if p.startswith(op + " ")]
        assert len(lines) == 1 and hint in lines[0], (op, problems)
    assert len(problems) == len(expected), problems
    code, _, err = run_cli(["build", path, "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(op in err for op in expected) and f"{len(expected)} unsupported" in err, err


def test_check_model_is_empty_for_a_model_that_exports(tmp_path):
    from mpc_export.load.model import check_model

    model = _with_random_statistics(OptionANet("view", planes_from_size=True), seed=7)
    assert check_model(export(model, tmp_path / "net.onnx", "torchscript_unfolded_dynamic_batch")) == []


def test_check_model_reports_a_file_problem_as_one_line(tmp_path):
    from mpc_export.load.model import check_model

    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a protobuf at all")
    problems = check_model(path)
    assert len(problems) == 1 and "not a valid ONNX model" in problems[0], problems


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 6))
def test_a_reshape_that_is_not_a_flatten_is_refused(rows):
    """A Reshape to (rows, -1) of one 16-value sample is a flatten only for rows == 1 (a batch of one)."""
    from mpc_export.errors import UserError
    from mpc_export.load.onnx_frontend import graph_from_model

    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"], name="gap"),
             helper.make_node("Reshape", ["p", "shape"], ["y"], name="reshape")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "k"])],
                              [numpy_helper.from_array(np.array([rows, -1], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if rows == 1:
        assert [n.op for n in graph_from_model(model, "m.onnx").nodes] == ["input", "mean_pool", "flatten"]
    else:
        with pytest.raises(UserError, match="Reshape 'reshape'"):
            graph_from_model(model, "m.onnx")
