"""Every seed architecture through every input format: build, verify on CIFAR-10 (>= 99.5 % argmax
agreement on 500 images, every layer inside its derived tolerance), and compile the program."""

import warnings

import pytest
import torch

from conftest import DATASET, SEED_MODEL, SHARED, need_shared, run_cli
from helpers import compile_program

pytestmark = pytest.mark.slow

FIXTURES = {
    "pruned_resnet": SEED_MODEL,
    "resnet20": SHARED / "fixtures" / "resnet20_cifar10.pth",
    "custresnet": SHARED / "fixtures" / "custresnet_cifar10.pth",
}
# preprocessing from ../shared/README.md, written out here
NORMALISE = {
    "pruned_resnet": None,
    "resnet20": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "custresnet": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def export_onnx(arch, path, folding, dynamo=False):
    from mpc_export.load.torch_models import torch_module

    module = torch_module(arch, need_shared(FIXTURES[arch])).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=True)
        else:
            torch.onnx.export(module, torch.zeros(1, 3, 32, 32), str(path), dynamo=False, do_constant_folding=folding)
    return path


def build_and_verify(model, arch, tmp_path, images=500, trust_torchscript=False):
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.pipeline.verify import VerifyOptions, verify

    need_shared(DATASET)
    mean, std = NORMALISE[arch] or (None, None)
    out = tmp_path / "out"
    manifest = build(BuildOptions(model=model, out=out, mean=mean, std=std, trust_torchscript=trust_torchscript))
    report = verify(VerifyOptions(directory=out, dataset=DATASET, limit=images, trust_torchscript=trust_torchscript))
    return manifest, report


CASES = [(arch, fmt) for arch in FIXTURES for fmt in ("state_dict", "onnx_folded", "onnx_unfolded")] + [("resnet20", "onnx_dynamo")]


@pytest.mark.parametrize("arch,fmt", CASES)
def test_build_verify_every_format(arch, fmt, tmp_path):
    model = need_shared(FIXTURES[arch])
    if fmt != "state_dict":
        model = export_onnx(arch, tmp_path / f"{arch}.onnx", folding=fmt == "onnx_folded", dynamo=fmt == "onnx_dynamo")
    manifest, report = build_and_verify(model, arch, tmp_path)
    bad = [(r["name"], r["max_abs_err"], r["tolerance"]) for r in report["layers"] if not r["ok"]]
    assert not bad, bad
    assert report["images"] == 500
    assert report["agreement"] >= 0.995, report["agreement"]
    print(f"{arch} {fmt}: agreement {report['agreement']:.4f} float {report['float_acc']:.4f} fixed {report['fixed_acc']:.4f}")


@pytest.mark.parametrize("arch", list(FIXTURES))
def test_every_fixture_program_compiles_small(arch, tmp_path):
    from mpc_export.pipeline.build import BuildOptions, build

    model = need_shared(FIXTURES[arch])
    manifest = build(BuildOptions(model=model, out=tmp_path / "out"))
    program = tmp_path / "out" / "program" / manifest["program"]["name"]
    summary, wall, peak_kb = compile_program(program, tmp_path / "asm")
    assert wall < 60 and peak_kb < 2 * 1024 * 1024
    assert summary["instructions"] < 200_000, summary["instructions"]


def test_resnet20_uses_packed_channels_within_the_reserved_range(tmp_path):
    from mpc_export.pipeline.build import BuildOptions, build

    manifest = build(BuildOptions(model=need_shared(FIXTURES["resnet20"]), out=tmp_path / "out"))
    params = [f for f in manifest["files"] if f["role"] == "parameter"]
    assert sorted(f["channel"] for f in params) == [100020, 100028, 100034, 100040]
    total = sum(t["count"] for f in params for t in f["tensors"])
    assert total == sum(f["count"] for f in params)
    for f in params:  # tensors are concatenated in layer order without gaps
        offsets = [t["offset"] for t in f["tensors"]]
        assert offsets == sorted(offsets) and offsets[0] == 0
        assert all(a["offset"] + a["count"] == b["offset"] for a, b in zip(f["tensors"], f["tensors"][1:]))


def test_unsupported_onnx_op_is_named(tmp_path, capsys):
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.sigmoid(self.conv(x)).flatten(1)

    path = tmp_path / "odd.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Odd().eval(), torch.zeros(1, 3, 8, 8), str(path), dynamo=False)
    code, out, err = run_cli(["build", path, "--out", tmp_path / "out"], capsys)
    assert code == 2 and "Sigmoid" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_dynamic_spatial_shape_is_refused(tmp_path, capsys):
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 64, 2))
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(conv.eval(), torch.zeros(1, 3, 8, 8), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    code, out, err = run_cli(["build", path, "--out", tmp_path / "out"], capsys)
    assert code == 2 and "dynamic" in err
    assert not (tmp_path / "out").exists()


def test_torchscript_input(tmp_path):
    from mpc_export.load.torch_models import torch_module

    module = torch_module("resnet20", need_shared(FIXTURES["resnet20"])).float()
    path = tmp_path / "resnet20_script.pt"
    torch.jit.trace(module, torch.zeros(1, 3, 32, 32)).save(str(path))
    manifest, report = build_and_verify(path, "resnet20", tmp_path, images=200, trust_torchscript=True)
    assert report["ok"] and report["agreement"] >= 0.995


def test_pickled_module_needs_trust(tmp_path, capsys):
    from mpc_export.load.torch_models import torch_module

    module = torch_module("pruned_resnet", SEED_MODEL)
    path = tmp_path / "whole.pt"
    torch.save(module, path)
    code, out, err = run_cli(["build", path, "--out", tmp_path / "a"], capsys)
    assert code == 2 and "--trust-pickle" in err and not (tmp_path / "a").exists()
    code, out, err = run_cli(["build", path, "--out", tmp_path / "b", "--trust-pickle"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["verify", tmp_path / "b", "--trust-pickle"], capsys)
    assert code == 0, out + err
