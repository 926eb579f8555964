"""build --calibrate: comparison widths from data. The narrowed program still executes its declaration
with every protocol input inside its range (plaintext execution), costs what the real compiler counts,
and verify --dataset on brighter images than the calibration set fails on the actual overflow."""

import json
from collections import Counter

import numpy as np
import pytest

from conftest import COMPILER, SEED_MODEL, need_shared, run_cli
from small_models import SmallPools, build_small
from helpers import assert_compiler_count_equals_report, declared_counts, execute_program, printed_values


def _dataset(path, size, images=64, brightness=255, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.integers(0, brightness + 1, (images, size, size, 3), dtype=np.uint8),
             y=rng.integers(0, 3, images))
    return path


def test_calibrated_program_executes_its_narrowed_declaration(tmp_path, capsys):
    data = _dataset(tmp_path / "cal.npz", 8)
    out = build_small(SmallPools, tmp_path, capsys, extra=["--calibrate", data, "--margin-bits", "2"])
    manifest = json.loads((out / "manifest.json").read_text())
    limits = manifest["protocol"]["comparison_limits"]
    assert limits and manifest["calibration"]["images"] == 64 and manifest["calibration"]["margin_bits"] == 2
    widths = {int(k) for k in manifest["cost"]["totals"]["comparisons_by_bits"]}
    assert min(widths) < 41  # narrower than the worst-case K-bit comparisons
    manifest, machine = execute_program(out)
    counts, products = declared_counts(manifest)
    assert machine.call_counts() == Counter({key: n * 2 for key, n in counts.items()})
    assert not machine.range_violations  # every LTZ input inside its narrowed range
    logits = printed_values(machine, "LOGIT")
    for e in manifest["executions"]:
        assert [logits[(str(e["index"]), str(j))] for j in range(3)] == e["logits"]
    code, _, err = run_cli(["verify", out, "--no-onnx"], capsys)  # re-derives the calibrated program
    assert code == 0, err


def test_verify_on_brighter_images_fails_on_the_actual_overflow(tmp_path, capsys):
    dark = _dataset(tmp_path / "dark.npz", 32, images=16, brightness=12)
    image = tmp_path / "dark.npy"
    np.save(image, np.full((3, 32, 32), 0.02))
    out = tmp_path / "out"
    code, _, err = run_cli(["build", SEED_MODEL, "--out", out, "--input", image, "--calibrate", dark, "--margin-bits", "0",
                            "--json"], capsys)
    assert code == 0, err
    bright = _dataset(tmp_path / "bright.npz", 32, images=16, seed=1)
    code, _, err = run_cli(["verify", out, "--dataset", bright, "--no-onnx", "--min-agreement", "0"], capsys)
    assert code == 1 and "overflow at" in err, err


@pytest.mark.slow
def test_calibrated_seed_program_costs_what_the_compiler_counts(tmp_path):
    from mpc_export.pipeline.build import BuildOptions, build

    need_shared(COMPILER)
    data = need_shared(COMPILER.parent.parent / "fixtures" / "cifar10_test.npz")
    manifest = build(BuildOptions(model=SEED_MODEL, out=tmp_path / "out", calibrate=data, calibrate_limit=500))
    assert manifest["cost"]["totals"]["triples"] < 82_672_980  # the uncalibrated default's compiler count
    assert_compiler_count_equals_report(manifest, tmp_path / "out" / "program" / manifest["program"]["name"], tmp_path)
