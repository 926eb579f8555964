"""Nothing silently ignored: every attribute, in every opset's schema (onnx.defs.get_schema), of every
ONNX op the front end accepts has a rule (honoured, or refused by name); a model using an attribute the
front end does not honour is refused naming the attribute, with every problem of the model listed."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli


def _schema_attributes(op: str) -> set[str]:
    names = set()
    for version in range(1, onnx.defs.onnx_opset_version() + 1):
        try:
            names |= set(onnx.defs.get_schema(op, version).attributes)
        except onnx.defs.SchemaError:
            continue
    return names


def test_every_schema_attribute_of_every_accepted_op_has_a_rule():
    from mpc_export.load.onnx_frontend import ATTRIBUTE_RULES, HANDLERS

    assert set(ATTRIBUTE_RULES) == set(HANDLERS)
    for op in HANDLERS:
        missing = _schema_attributes(op) - set(ATTRIBUTE_RULES[op])
        assert not missing, f"{op}: no rule for {sorted(missing)}"


def _model(pool_attrs: dict, conv_attrs: dict | None = None) -> onnx.ModelProto:
    """input (1, 3, 8, 8) -> Conv 3x3 -> MaxPool 2x2 (with the given attributes) -> Flatten -> Gemm."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((3, 64)).astype(np.float32), "fw"),
             numpy_helper.from_array(np.zeros(3, np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], **(conv_attrs or {})),
             helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2], **pool_attrs),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_plain_model_builds(tmp_path, capsys):
    path = tmp_path / "plain.onnx"
    onnx.save(_model({}), str(path))
    code, _, err = run_cli(["build", path, "--out", tmp_path / "out", "--json"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("attrs,named", [
    ({"dilations": [2, 2]}, "attribute dilations = [2, 2]"),
    ({"auto_pad": "SAME_UPPER"}, "attribute auto_pad = SAME_UPPER"),
    ({"ceil_mode": 1}, "attribute ceil_mode = 1"),
])
def test_an_attribute_not_honoured_is_refused_by_name(attrs, named, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(_model(attrs), str(path))
    code, _, err = run_cli(["build", path, "--out", tmp_path / "out"], capsys)
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_every_problem_is_listed_at_once(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(_model({"dilations": [2, 2]}, conv_attrs={"group": 1, "dilations": [2, 2]}), str(path))
    code, _, err = run_cli(["build", path, "--out", tmp_path / "out"], capsys)
    assert code == 2 and "2 unsupported" in err and "Conv 'conv'" in err and "MaxPool 'pool'" in err, err
