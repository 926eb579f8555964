"""Preprocessing cannot be silently wrong. A model file that does not record its input normalization (ONNX,
TorchScript, a pickled module) is built with pixel / 255 unless --mean/--std say otherwise: the summary and
the manifest say so ("assumed"). verify --dataset scores the float model under the build's preprocessing
and under the common normalizations; a normalized model built without its normalization fails verify in
one line naming the --mean/--std to rebuild with. The oracle: the trained ResNet-20 fixture (trained with
ImageNet's mean/std, which its state_dict front end knows) exported to ONNX, where that knowledge is lost."""

import json
import warnings

import pytest
import torch

from conftest import DATASET, SEED_MODEL, SHARED, need_shared, run_cli
from small_models import SmallAvg, build_small

RESNET20 = SHARED / "fixtures" / "resnet20_cifar10.pth"
IMAGENET = ("0.485,0.456,0.406", "0.229,0.224,0.225")


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def test_an_onnx_build_says_its_preprocessing_is_assumed(tmp_path, capsys):
    out = build_small(SmallAvg, tmp_path, capsys)
    assert _manifest(out)["preprocessing"]["source"] == "assumed"
    code, text, err = run_cli(["build", tmp_path / "small.onnx", "--out", tmp_path / "o2"], capsys)
    assert code == 0, err
    summary = " ".join(text.split())
    assert "assumed: an ONNX model does not record its input normalization" in summary and "--mean M,M,M --std S,S,S" in summary


def test_a_known_architecture_and_the_command_line_say_where_theirs_comes_from(tmp_path, capsys):
    code, _, err = run_cli(["build", SEED_MODEL, "--out", tmp_path / "a", "--json"], capsys)
    assert code == 0, err
    assert _manifest(tmp_path / "a")["preprocessing"]["source"] == "architecture"
    code, _, err = run_cli(["build", SEED_MODEL, "--out", tmp_path / "b", "--mean", IMAGENET[0], "--std", IMAGENET[1], "--json"], capsys)
    assert code == 0, err
    assert _manifest(tmp_path / "b")["preprocessing"]["source"] == "command line"


@pytest.fixture(scope="module")
def resnet20_onnx(tmp_path_factory):
    from mpc_export.load.torch_models import torch_module

    path = tmp_path_factory.mktemp("onnx") / "resnet20.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch_module("resnet20", need_shared(RESNET20)).eval(), torch.zeros(1, 3, 32, 32), str(path), dynamo=False)
    return path


def _build_and_verify(model, tmp_path, capsys, build_args=(), verify_args=()):
    """Build ``model`` (with ``build_args``), then verify it on 200 CIFAR-10 images: verify's (code, stdout, stderr)."""
    out = tmp_path / "out"
    code, _, err = run_cli(["build", model, "--out", out, "--json", *build_args], capsys)
    assert code == 0, err
    return run_cli(["verify", out, "--dataset", need_shared(DATASET), "--limit", "200", "--no-onnx", *verify_args], capsys)


@pytest.mark.slow
def test_a_normalized_model_built_without_its_normalization_fails_verify_in_one_line(resnet20_onnx, tmp_path, capsys):
    code, text, err = _build_and_verify(resnet20_onnx, tmp_path, capsys)
    assert code == 1
    line = " ".join(err.split())
    assert "with this build's preprocessing (pixel / 255)" in line and "with ImageNet mean/std" in line
    assert f"rebuild with --mean {IMAGENET[0]} --std {IMAGENET[1]}" in line
    assert len(err.strip().splitlines()) <= 3  # one line, folded by the terminal width
    assert "float model on" in text.splitlines()[0]  # the float model's accuracy comes first


@pytest.mark.slow
def test_the_same_model_with_its_normalization_verifies(resnet20_onnx, tmp_path, capsys):
    code, text, err = _build_and_verify(resnet20_onnx, tmp_path, capsys, ["--mean", IMAGENET[0], "--std", IMAGENET[1]],
                                        ["--report", tmp_path / "r.json"])
    assert code == 0, err + text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["preprocessing_check"] == {"ok": True} and report["float_acc"] > 0.8


@pytest.mark.slow
def test_the_check_can_be_switched_off(resnet20_onnx, tmp_path, capsys):
    code, _, err = _build_and_verify(resnet20_onnx, tmp_path, capsys, verify_args=["--no-preprocessing-check", "--min-agreement", "0"])
    assert code == 0, err
