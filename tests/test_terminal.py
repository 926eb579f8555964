"""What the terminal says matches what happened: sizes in their unit, Winograd only where it applies,
hints that can be pasted as they are (the trust flags the model needs), the plot's verdict, and where
the plot went."""

import warnings

import numpy as np
import torch
import torch.nn as nn

from conftest import SEED_MODEL, run_cli


class FiveByFive(nn.Module):
    """Only 5x5 convolutions: Winograd F(2x2, 3x3) applies to none."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 5, padding=2), nn.Linear(4 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


def _summary(args, capsys):
    code, text, err = run_cli(args, capsys)
    assert code == 0, err
    return " ".join(text.split())


def test_sizes_and_winograd_say_what_the_model_has(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(FiveByFive().eval(), torch.zeros(1, 3, 32, 32), str(path), dynamo=False)
    text = _summary(["build", path, "--out", tmp_path / "o"], capsys)
    macs = 4 * 3 * 25 * 32 * 32 + 4 * 32 * 32 * 10  # conv + linear, counted here
    assert macs == 348_160 and "348 kMAC" in text and "GMAC" not in text
    assert "winograd requested, applied to none of its convolutions" in text
    seed = _summary(["build", SEED_MODEL, "--out", tmp_path / "s"], capsys)
    assert "exact truncation, winograd convolutions," in seed and "(7 layers)" not in seed  # all six are 3x3, stride 1


def test_hints_carry_the_trust_flags_the_model_needs(tmp_path, capsys):
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(FiveByFive().eval()), str(path))
    text = _summary(["build", path, "--out", tmp_path / "o", "--trust-torchscript"], capsys)
    assert f"next: mpc-export verify {tmp_path / 'o'} --trust-torchscript" in text
    text = _summary(["verify", tmp_path / "o", "--trust-torchscript", "--no-onnx"], capsys)
    assert "--runtime FANNG_DIR --trust-torchscript" in text


def test_verify_says_where_it_wrote_the_plot_and_the_plot_carries_the_verdict(tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "o"
    _summary(["build", SEED_MODEL, "--out", out, "--json"], capsys)
    text = _summary(["verify", out, "--no-onnx", "--plot", tmp_path / "p.png"], capsys)
    assert f"plot: wrote {tmp_path / 'p.png'}" in text
    image = matplotlib.image.imread(tmp_path / "p.png")
    assert image.shape[0] > 100 and not np.all(image == image[0, 0])


def test_the_last_build_is_remembered_per_working_directory(tmp_path, capsys, monkeypatch):
    here, there = tmp_path / "project_a", tmp_path / "project_b"
    here.mkdir()
    there.mkdir()
    monkeypatch.chdir(here)
    _summary(["build", SEED_MODEL, "--out", here / "out", "--json"], capsys)
    assert "verified" in _summary(["verify", "--no-onnx"], capsys)
    monkeypatch.chdir(there)
    code, _, err = run_cli(["verify", "--no-onnx"], capsys)
    assert code == 2 and "no build made from this working directory" in err


def test_no_progress_bar_before_the_arguments_are_checked(tmp_path, capsys):
    """A typo is one line; nothing (no bar, no partial output) comes before it."""
    code, out, err = run_cli(["build", tmp_path / "missing.pth", "--out", tmp_path / "o"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_json_is_a_flag_printing_one_object_on_every_command(tmp_path, capsys):
    import json

    out = tmp_path / "o"
    for args in (["build", SEED_MODEL, "--out", out, "--json"], ["verify", out, "--no-onnx", "--json"], ["cost", out, "--json"]):
        code, text, err = run_cli(args, capsys)
        assert code == 0, err
        assert isinstance(json.loads(text), dict), args
    code, text, err = run_cli(["verify", out, "--no-onnx", "--report", tmp_path / "r.json"], capsys)
    assert code == 0 and json.loads((tmp_path / "r.json").read_text())["ok"] is True
