"""Real 3-party runs in the FANNG-MPC runtime (../shared/tools/fanng-runtime, built once and cached).

Each run takes ~11.5 GB (3 players x ~3.8 GB): these tests run one at a time (no parallel pytest), and
skip with a message when ../shared or a runtime is absent."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, built_runtime, need_shared, run_cli
from small_models import SmallAvg, SmallOddKernels, SmallPools, SmallResidual, build_small
from helpers import players_left

pytestmark = pytest.mark.runtime

COMPILER_DIR = SHARED / "tools" / "mamba-compiler"


def _latest_logs(out) -> Path:
    """The newest run's log directory (run writes each run's logs to a fresh run-logs/run-<n>/)."""
    runs = sorted((out / "run-logs").glob("run-*"), key=lambda p: int(p.name.split("-")[1]))
    return runs[-1]


def _logged_logits(out):
    log = (_latest_logs(out) / "P0.log").read_text()
    return {(int(e), int(j)): int(v) for e, j, v in re.findall(r"LOGIT (\d+) (\d+) (-?\d+)", log)}


@pytest.mark.parametrize("module_cls,convolution", [(SmallAvg, "winograd"), (SmallAvg, "direct"), (SmallResidual, "winograd"),
                                                    (SmallOddKernels, "winograd"), (SmallPools, "winograd")],
                         ids=["conv_avgpool_linear_winograd", "conv_avgpool_linear_direct", "residual_maxpool_winograd",
                              "odd_kernels_5x5_7x7_maxpool_after_relu", "pools_after_relu_and_add_dense_on_planes"])
def test_real_run_in_exact_mode_equals_the_reference(module_cls, convolution, runtime, tmp_path, capsys):
    """Exact truncation (the default): every logit equal to the reference, with Winograd (the default)
    and with direct convolutions; the residual model's program also prints every layer (--debug), each
    equal too; so do the odd kernels (5x5 unpadded, 5x5 padding 2, 7x7 stride 2) with a max pool after
    the ReLU, and pools after a ReLU and a residual add feeding dense layers. Each player runs in its own root, and only player 0's holds the P0 files: players 1 and 2
    complete the run without them."""
    debug = module_cls in (SmallResidual, SmallOddKernels)
    out = build_small(module_cls, tmp_path, capsys, debug=debug, extra=["--convolution", convolution])
    code, stdout, err = run_cli(["run", out, "--runtime", runtime, "--compiler", need_shared(COMPILER_DIR), "--timeout", "300",
                                 "--keep"], capsys)
    assert code == 0, stdout + err
    kept = Path(re.search(r"kept run roots: (\S+)", stdout).group(1))
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        data = manifest["data_folder"]
        p0_files = {Path(f["path"]) for f in manifest["files"] if f["role"] in ("parameter", "input")}  # never Outputs/
        assert {p.relative_to(kept / "P0" / "Data") for p in (kept / "P0" / "Data" / data).rglob("*") if p.is_file()} == p0_files
        for player in (1, 2):
            assert not (kept / f"P{player}" / "Data" / data).exists()
            assert not [p for p in (kept / f"P{player}").rglob("P0-*") if p.is_file()]
            assert (_latest_logs(out) / f"P{player}.log").stat().st_size > 0  # it ran (run fails on any exit but 0)
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    assert "runtime check: passed" in " ".join(stdout.split())
    logged = _logged_logits(out)
    assert len(logged) == 2 * 3
    for execution in manifest["executions"]:
        e = execution["index"]
        assert [logged[(e, j)] for j in range(3)] == execution["logits"]
    if not debug:  # the cost report's rounds are the runtime's own count (--debug prints add one per value)
        sent = re.findall(r"Sent \d+ elements in (\d+) rounds", (_latest_logs(out) / "P0.log").read_text())
        rows, once = manifest["cost"]["layers"], set(manifest["cost"]["once_per_program"])
        predicted = sum(r["rounds"] for r in rows if r["node"] in once) \
            + len(manifest["executions"]) * sum(r["rounds"] for r in rows if r["node"] not in once)
        assert sent and int(sent[-1]) == predicted
    if debug:
        layers = re.findall(r"layer (\S+): (\d+) values, max \|MPC - reference\| = (\d+) ulp, bound (\d+) ulp",
                            " ".join(stdout.split()))
        assert len(layers) >= 4  # e.g. conv_layer_1, conv_layer_2, the add, the global max pool, the linear layer
        assert all(err_ == "0" and bound == "0" for _, _, err_, bound in layers)
    assert not players_left()


def test_real_run_in_probabilistic_mode_stays_within_its_bound(runtime, tmp_path, capsys):
    out = build_small(SmallAvg, tmp_path, capsys, extra=["--truncation", "probabilistic"])
    code, stdout, err = run_cli(["run", out, "--runtime", runtime, "--compiler", need_shared(COMPILER_DIR), "--timeout", "300"], capsys)
    assert code == 0, stdout + err
    bound = int(re.search(r"bound (\d+) ulp; predicted", " ".join(stdout.split())).group(1))
    assert bound > 0
    manifest = json.loads((out / "manifest.json").read_text())
    logged = _logged_logits(out)
    for execution in manifest["executions"]:
        e = execution["index"]
        mpc = [logged[(e, j)] for j in range(3)]
        assert max(abs(a - b) for a, b in zip(mpc, execution["logits"])) <= bound
        assert int(np.argmax(mpc)) == execution["predicted_class"]
    assert not players_left()


def test_tampered_file_is_refused_before_any_player_starts(runtime, tmp_path, capsys):
    out = build_small(SmallAvg, tmp_path, capsys)
    manifest = json.loads((out / "manifest.json").read_text())
    rel = next(f["path"] for f in manifest["files"] if f["role"] == "parameter" and "conv_layer_1_weight" in f["path"])
    text = (out / rel).read_text()
    (out / rel).write_text(text.replace("0.", "1.", 1))
    code, stdout, err = run_cli(["run", out, "--runtime", runtime, "--compiler", need_shared(COMPILER_DIR)], capsys)
    assert code == 1 and rel in err
    assert not (out / "run-logs").exists()  # no player was started


def test_runtime_failure_reports_the_player_and_leaves_nothing_running(runtime, tmp_path, capsys):
    """A player that fails at run time (here player 1's certificate is corrupt in the operator's set-up;
    every file of the build is intact, so only the runtime can tell) is reported with its last log lines,
    and no player is left running."""
    out = build_small(SmallAvg, tmp_path, capsys)
    broken = tmp_path / "runtime"
    broken.mkdir()
    for name in ("PlayerBinary.x", "Circuits"):
        (broken / name).symlink_to(Path(runtime) / name)
    setup = next(Path(runtime) / name for name in ("Data", "Data-template") if (Path(runtime) / name / "NetworkData.txt").is_file())
    shutil.copytree(setup, broken / "Data")
    shutil.copytree(Path(runtime) / "Cert-Store", broken / "Cert-Store")
    (broken / "Cert-Store" / "Player1.crt").write_text("not a certificate\n")
    code, stdout, err = run_cli(["run", out, "--runtime", broken, "--compiler", need_shared(COMPILER_DIR), "--timeout", "300"], capsys)
    assert code == 1, stdout + err
    assert re.search(r"player \d failed", err)
    assert len(err.strip().splitlines()) >= 3  # the failing player's last log lines
    assert not players_left()


def _run_kept(out, runtime, capsys) -> tuple[Path, str]:
    """mpc-export run with --keep; returns the kept run roots (the caller removes them) and the output."""
    code, stdout, err = run_cli(["run", out, "--runtime", runtime, "--compiler", need_shared(COMPILER_DIR), "--timeout", "300",
                                 "--keep"], capsys)
    assert code == 0, stdout + err
    return Path(re.search(r"kept run roots: (\S+)", stdout).group(1)), stdout


def _held_by(kept: Path, player: int, manifest: dict) -> set[str]:
    """The build's data files in player's run root, as paths relative to its Data/ folder."""
    data = kept / f"P{player}" / "Data"
    return {p.relative_to(data).as_posix() for p in (data / manifest["data_folder"]).rglob("*") if p.is_file()}


def test_real_run_with_public_weights_equals_the_reference(runtime, tmp_path, capsys):
    """--weights public: FANNG's IO serves the parameter files as public input on every player (each
    reads its own copy; the runtime checks they agree); the input stays player 0's. Logits equal the
    reference, and the program needs fewer triples than the same model with secret weights."""
    (tmp_path / "private").mkdir()
    (tmp_path / "public").mkdir()
    private = build_small(SmallResidual, tmp_path / "private", capsys)
    out = build_small(SmallResidual, tmp_path / "public", capsys, extra=["--weights", "public"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["protocol"]["weights"] == "public" and "Every player learns the model" in manifest["disclosure"]
    secret_triples = json.loads((private / "manifest.json").read_text())["cost"]["totals"]["triples"]
    assert manifest["cost"]["totals"]["triples"] < secret_triples
    kept, _ = _run_kept(out, runtime, capsys)
    try:
        parameters = {f["path"] for f in manifest["files"] if f["role"] == "parameter"}
        inputs = {f["path"] for f in manifest["files"] if f["role"] == "input"}
        for player in (1, 2):
            held = _held_by(kept, player, manifest)
            assert held == parameters and not held & inputs
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    logged = _logged_logits(out)
    for execution in manifest["executions"]:
        assert [logged[(execution["index"], j)] for j in range(3)] == execution["logits"]
    assert not players_left()


def test_real_run_with_public_sparsity_equals_the_reference(runtime, tmp_path, capsys):
    """--sparsity public: every player reads the pattern (channel 100048) as public integers from its own
    copy, and each convolution loops over its non-zero weights; players 1 and 2 hold the pattern and
    nothing else of player 0's. Logits and every --debug layer equal the reference (the odd-kernel model:
    5x5 unpadded, 5x5 padding 2, 7x7 stride 2, 1x1; 70 % of the weights zero, one output channel
    entirely)."""
    out = build_small(SmallOddKernels, tmp_path, capsys, debug=True, prune=0.7, extra=["--sparsity", "public"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["protocol"]["sparsity"] == "public"
    kept, stdout = _run_kept(out, runtime, capsys)
    try:
        pattern = {f["path"] for f in manifest["files"] if f["role"] == "sparsity_pattern"}
        for player in (1, 2):
            assert _held_by(kept, player, manifest) == pattern
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    logged = _logged_logits(out)
    for execution in manifest["executions"]:
        assert [logged[(execution["index"], j)] for j in range(3)] == execution["logits"]
    layers = re.findall(r"layer (\S+): (\d+) values, max \|MPC - reference\| = (\d+) ulp, bound (\d+) ulp", " ".join(stdout.split()))
    assert len(layers) >= 4 and all(err_ == "0" for _, _, err_, _ in layers)
    assert not players_left()


@pytest.fixture(scope="module")
def upstream_runtime():
    """FANNG-MPC built with src/config.h as shipped (FANNG_CONFIG=upstream: every Beaver triple zero)."""
    return built_runtime("FANNG_RUNTIME_UPSTREAM", SHARED / "tools" / "fanng-runtime" / "build",
                         "the upstream-configured FANNG-MPC runtime", 900, {"FANNG_CONFIG": "upstream"})


def test_a_runtime_built_as_fanng_ships_it_is_refused_before_any_input(upstream_runtime, tmp_path, capsys):
    """FANNG's config.h as shipped makes every Beaver triple zero (each product would open its operands):
    the program's own check stops it before the first channel opens, and run refuses in one line."""
    out = build_small(SmallAvg, tmp_path, capsys)
    code, stdout, err = run_cli(["run", out, "--runtime", upstream_runtime, "--compiler", need_shared(COMPILER_DIR),
                                 "--timeout", "300"], capsys)
    assert code == 2, stdout + err
    line = err.strip().splitlines()[-1]
    assert "RUNTIME CHECK FAILED" in line and "Beaver triples are not random" in line and "return_triple_zero" in line
    p0 = (_latest_logs(out) / "P0.log").read_text()
    assert "Opening channel" not in p0 and "LOGIT" not in p0  # player 0 never opened its input channel
    assert not players_left()
