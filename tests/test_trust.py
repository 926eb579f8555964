"""Trust comes from the command line only: a model's code (a pickled module, a TorchScript forward) runs
only with the flag on that command; nothing in a build directory turns it on."""

import hashlib
import json

import torch

from conftest import SEED_MODEL, run_cli


class Marker(torch.nn.Module):
    """A module whose unpickling would be visible: __setstate__ writes a file."""

    def __init__(self, path):
        super().__init__()
        self.path = str(path)
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.fc = torch.nn.Linear(2 * 32 * 32, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))

    def __setstate__(self, state):
        super().__setstate__(state)
        open(self.__dict__["path"], "w").write("unpickled")


def test_verify_never_unpickles_because_the_manifest_says_pickle(tmp_path, capsys):
    from mpc_export.pipeline.build import BuildOptions, build

    out = tmp_path / "out"
    build(BuildOptions(model=SEED_MODEL, out=out))
    marker = tmp_path / "ran"
    hostile = tmp_path / "model.pt"
    torch.save(Marker(marker), hostile)
    assert not marker.exists()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["model"].update(format="pickle", path=str(hostile), sha256=hashlib.sha256(hostile.read_bytes()).hexdigest())
    (out / "manifest.json").write_text(json.dumps(manifest))
    for extra in ([], ["--model", hostile]):
        code, stdout, err = run_cli(["verify", out, "--no-onnx", *extra], capsys)
        assert code in (1, 2)
        assert not marker.exists(), "verify executed a pickled model"


def test_torchscript_needs_its_flag_on_each_command(tmp_path, capsys):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(2 * 32 * 32, 3)).eval()
    path = tmp_path / "scripted.pt"
    torch.jit.trace(module, torch.zeros(1, 3, 32, 32)).save(str(path))
    code, _, err = run_cli(["build", path, "--out", tmp_path / "a"], capsys)
    assert code == 2 and "--trust-torchscript" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()
    code, _, err = run_cli(["build", path, "--out", tmp_path / "b", "--trust-torchscript"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["verify", tmp_path / "b", "--no-onnx"], capsys)
    assert code == 2 and "--trust-torchscript" in err
    code, out, err = run_cli(["verify", tmp_path / "b", "--no-onnx", "--trust-torchscript"], capsys)
    assert code == 0, out + err
