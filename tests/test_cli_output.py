"""What a user sees: every command's output read in an 80-column terminal ($COLUMNS=80, as a separate
process, the way a shell runs it) is not cut (no line wider than 80, no ellipsis), errors are one line
without a blank line before them, and the help texts show plain metavars."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SEED_MODEL

pytestmark = pytest.mark.slow

WIDTH = 80


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    env.pop("MPC_EXPORT_TRACEBACK", None)
    return subprocess.run([str(Path(sys.executable).parent / "mpc-export"), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def assert_fits(text: str) -> None:
    for line in text.splitlines():
        assert len(line.rstrip()) <= WIDTH, f"wider than {WIDTH}: {line!r}"
        assert "…" not in line, f"cut: {line!r}"
        assert line.startswith("Usage:") or not line.rstrip().endswith("..."), f"cut: {line!r}"  # click's [ARGS]...


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli80") / "seed"
    proc = cli("build", SEED_MODEL, "--out", out, "--verbose")
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_help_texts_fit_and_show_plain_metavars():
    for args in ([], ["build"], ["verify"], ["run"], ["cost"], ["check"]):
        proc = cli(*args, "-h")
        assert proc.returncode == 0, proc.stderr
        assert_fits(proc.stdout)
        assert "<bool>" not in proc.stdout and "<path>" not in proc.stdout and "{" not in proc.stdout, proc.stdout
    assert "Usage: mpc-export build [OPTIONS] MODEL" in cli("build", "--help").stdout


def test_version_is_the_installed_distributions():
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"mpc-export {expected}"


def test_build_summary_is_short_names_the_class_and_the_preprocessing(built, tmp_path):
    out, verbose = built
    assert_fits(verbose.stdout)
    assert "P0-conv_layer_1_weight.txt" in verbose.stdout  # --verbose: every tensor and its file
    proc = cli("build", SEED_MODEL, "--out", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert_fits(proc.stdout)
    text = " ".join(proc.stdout.split())
    assert len(proc.stdout.splitlines()) <= 25, proc.stdout
    assert "pixel / 255" in text and "F = 12" in text and "82,672,984 triples" in text
    assert "airplane (class 0)" in text  # the demo pattern's class; CIFAR-10's label order
    assert f"next: mpc-export verify {out}" in text


def test_verify_cost_and_dataset_outputs_fit(built, tmp_path):
    out, _ = built
    for args in (["verify", out, "--no-onnx"], ["cost", out]):
        proc = cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert_fits(proc.stdout)
    rng = np.random.default_rng(1)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 10, 6))
    proc = cli("verify", out, "--dataset", data, "--min-agreement", "0", "--plot", tmp_path / "p.png")
    assert proc.returncode == 0, proc.stderr
    assert_fits(proc.stdout)
    assert (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.parametrize("args", [["build", "missing.pth"], ["build"], ["build", "x.pth", "--bogus"],
                                  ["verify", "--limit", "x"], ["nope"]])
def test_an_error_is_one_line_without_a_blank_line_before_it(args, tmp_path):
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert_fits(proc.stdout)
