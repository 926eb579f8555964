"""Bad input: one readable line, non-zero exit, and nothing written."""

import math

import numpy as np
import pytest
import torch

from conftest import SEED_MODEL, run_cli


def assert_one_line_error(code, out, err, pattern):
    assert code == 2, (code, out, err)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    text = " ".join(lines)
    assert "Traceback" not in err
    assert pattern.lower() in text.lower(), text


def tampered_model(tmp_path, change):
    state = torch.load(SEED_MODEL, map_location="cpu", weights_only=True)
    change(state)
    path = tmp_path / "model.pth"
    torch.save(state, path)
    return path


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path / "out"


def nothing_left(out_dir):
    return not out_dir.exists() and not any(p.name.startswith(f".{out_dir.name}.tmp") for p in out_dir.parent.iterdir())


def _write(path, data):
    path.write_bytes(data)
    return path


def _set(key, fn):
    def change(state):
        state[key] = fn(state[key])
    return change


CASES = {
    "missing": (lambda tmp: tmp / "nope.pth", "not found"),
    "empty": (lambda tmp: _write(tmp / "e.pth", b""), "empty"),
    "corrupt": (lambda tmp: _write(tmp / "c.pth", b"this is not a model" * 10), "not a readable"),
    "truncated": (lambda tmp: _write(tmp / "t.pth", SEED_MODEL.read_bytes()[:100000]), "not a readable"),
    "unknown arch": (lambda tmp: tampered_model(tmp, lambda s: [s.pop(k) for k in list(s) if k.startswith("network.28")]), "unknown architecture"),
    "wrong shape": (lambda tmp: tampered_model(tmp, _set("network.4.weight", lambda w: w[:, :16])), "shape"),
    "nan weight": (lambda tmp: tampered_model(tmp, _set("network.8.weight", lambda w: w.index_fill(0, torch.tensor([0]), math.nan))), "nan"),
    "inf weight": (lambda tmp: tampered_model(tmp, _set("network.0.bias", lambda w: w.index_fill(0, torch.tensor([0]), math.inf))), "inf"),
    "bad variance": (lambda tmp: tampered_model(tmp, _set("network.5.running_var", lambda v: v.index_fill(0, torch.tensor([3]), -1.0))), "running_var"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_model(case, tmp_path, out_dir, capsys):
    make, pattern = CASES[case]
    model = make(tmp_path)
    code, out, err = run_cli(["build", model, "--out", out_dir], capsys)
    assert_one_line_error(code, out, err, pattern)
    assert nothing_left(out_dir)


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["--frac-bits", "0"], "--frac-bits"),
        (["--frac-bits", "40"], "--frac-bits"),
        (["--total-bits", "60"], "breaks the field"),
        (["--total-bits", "10"], "--total-bits"),
        (["--frac-bits", "16"], "reading-precision"),
        (["--frac-bits", "30", "--total-bits", "32", "--number-format", "integer"], "more than total-bits"),
        (["--frac-bits", "28", "--total-bits", "41", "--number-format", "integer"], "breaks the 128-bit field"),
        (["--number-format", "hex"], "number-format"),
    ],
)
def test_bad_precision(args, pattern, out_dir, capsys):
    code, out, err = run_cli(["build", SEED_MODEL, "--out", out_dir, *args], capsys)
    assert_one_line_error(code, out, err, pattern)
    assert nothing_left(out_dir)


def test_weights_too_large_for_k(tmp_path, out_dir, capsys):
    model = tampered_model(tmp_path, _set("network.0.weight", lambda w: w.index_fill(0, torch.tensor([0]), 2.0**30)))
    code, out, err = run_cli(["build", model, "--out", out_dir], capsys)
    assert_one_line_error(code, out, err, "bits")
    assert nothing_left(out_dir)


CHANNEL_MAPS = {
    "not toml": ("this is = = not toml", "not valid TOML"),
    "duplicate": (None, "used twice"),
    "out of range": (None, "outside the parameter range"),
    "reserved": (None, "reserved"),
    "missing tensor": (None, "no channel for tensor"),
}


@pytest.mark.parametrize("case", list(CHANNEL_MAPS))
def test_bad_channel_map(case, tmp_path, out_dir, capsys):
    from conftest import ROOT

    text = (ROOT / "mpc_export" / "export" / "channel_map.toml").read_text()
    if case == "not toml":
        text = CHANNEL_MAPS[case][0]
    elif case == "duplicate":
        text = text.replace("conv_layer_2_bias = 100021", "conv_layer_2_bias = 100020")
    elif case == "out of range":
        text = text.replace("conv_layer_2_bias = 100021", "conv_layer_2_bias = 100099")
    elif case == "reserved":
        text = text.replace("conv_layer_2_bias = 100021", "conv_layer_2_bias = 100048")
    elif case == "missing tensor":
        text = text.replace("conv_layer_2_bias = 100021\n", "")
    path = tmp_path / "map.toml"
    path.write_text(text)
    code, out, err = run_cli(["build", SEED_MODEL, "--out", out_dir, "--channel-map", path], capsys)
    assert_one_line_error(code, out, err, CHANNEL_MAPS[case][1])
    assert nothing_left(out_dir)


def _image(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return path


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda t: [_image(t, "a.npy", np.zeros((3, 16, 16)))], "shape"),
        (lambda t: [_image(t, "b.npy", np.full((3, 32, 32), np.nan))], "nan"),
        (lambda t: [_image(t, "c.npy", np.full((3, 32, 32), 1.5))], "[0, 1]"),
        (lambda t: [_image(t, f"d{i}.npy", np.zeros((3, 32, 32))) for i in range(11)], "11 inputs"),
        (lambda t: [t / "missing.png"], "not found"),
        (lambda t: [_write(t / "x.png", b"garbage")], "not a readable image"),
        (lambda t: [_write(t / "x.bmp", b"garbage")], "unsupported"),
    ],
)
def test_bad_inputs(make, pattern, tmp_path, out_dir, capsys):
    args = ["build", SEED_MODEL, "--out", out_dir]
    for p in make(tmp_path):
        args += ["--input", p]
    code, out, err = run_cli(args, capsys)
    assert_one_line_error(code, out, err, pattern)
    assert nothing_left(out_dir)


def test_existing_output_is_left_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(["build", SEED_MODEL, "--out", out], capsys)
    assert_one_line_error(code, "", err, "--force")
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


def test_output_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_cli(["build", SEED_MODEL, "--out", blocker / "sub"], capsys)
    assert_one_line_error(code, out, err, "cannot create")


def test_force_replaces_and_png_input_works(tmp_path, capsys):
    from PIL import Image

    img = tmp_path / "img.png"
    Image.fromarray((np.arange(32 * 32 * 3) % 256).astype(np.uint8).reshape(32, 32, 3)).save(img)
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = run_cli(["build", SEED_MODEL, "--out", out, "--force", "--input", img, "--json"], capsys)
    assert code == 0, err
    import json

    summary = json.loads(stdout)
    assert summary["executions"][0]["source"] == str(img)
    assert (out / "manifest.json").exists()
