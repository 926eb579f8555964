"""The MP-SPDZ backend: the same verified export as an MP-SPDZ program.

Oracles from elsewhere: the fixed-point reference's logits (the build records them; the reference is tested
against independent integer oracles elsewhere) must be printed bit for bit by real 3-party runs of
MP-SPDZ's own VMs (``../shared/tools/mp-spdz``), semi-honest and malicious, ring and field, for models
covering every op; MP-SPDZ's compiler counts the program's dot products and private inputs, which must
equal the backend's cost report and input file. Without the MP-SPDZ runtime those tests skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from conftest import run_cli
from small_models import OptionANet, SmallAddFlat, SmallAvg, SmallMLP, SmallOddKernels, SmallPools, SmallResidual, SmallStrided, SmallStridedFlat, SmallVGG, build_small, randomise_batchnorm
from helpers import HOSTILE, rename_everything

SMALL = [SmallAddFlat, SmallAvg, SmallOddKernels, SmallPools, SmallResidual, SmallStrided, SmallStridedFlat, SmallVGG, SmallMLP]


def mp_build(module_cls, tmp_path, capsys, protocol="ring", extra=()):
    return build_small(module_cls, tmp_path, capsys, extra=["--backend", "mp-spdz", "--protocol", protocol, *extra])


def manifest_of(out):
    return json.loads((out / "manifest.json").read_text())


# ---- build and verify (no runtime)

def test_build_writes_the_program_and_player_0s_input_and_verify_re_derives_them(tmp_path, capsys):
    out = mp_build(SmallResidual, tmp_path, capsys, protocol="sy-rep-ring")
    m = manifest_of(out)
    assert m["backend"] == "mp-spdz" and m["mp_spdz"]["protocol"] == "sy-rep-ring"
    assert m["program"]["path"] == "mp-spdz/mpc_export_small.mpc"
    roles = {f["path"]: f["role"] for f in m["files"]}
    assert roles["mp-spdz/mpc_export_small.mpc"] == "program" and roles["mp-spdz/Player-Data/Input-P0-0"] == "mp_spdz_input"
    assert not any(r in ("io_answers", "io_answers_script") for r in roles.values())
    # the input file: every parameter once, then each execution's input, as integers
    values = (out / "mp-spdz/Player-Data/Input-P0-0").read_text().split()
    parameters = sum(f["count"] for f in m["files"] if f["role"] == "parameter")
    inputs = sum(f["count"] for f in m["files"] if f["role"] == "input")
    assert len(values) == parameters + inputs
    assert all(v.lstrip("-").isdigit() for v in values)
    # domain: the widest declared step is a 2K-bit truncation; a ring of 128 bits holds it
    assert m["mp_spdz"]["largest_bit_length"] == 2 * m["fixed_point"]["total_bits"]
    assert m["mp_spdz"]["domain"] == {"kind": "ring", "ring_bits": 128, "compile_flags": ["-R", "128"]}
    code, out_text, err = run_cli(["verify", out, "--no-onnx"], capsys)
    assert code == 0, err
    assert "MP_SPDZ_DIR" in out_text and "FANNG_DIR" not in out_text


def test_the_input_file_holds_the_parameters_and_the_images_in_the_programs_order(tmp_path, capsys):
    """Re-derived independently: weights O x K x K x C, then each image HWC, taken from the build's own P0
    files (the shared data files, parsed as integers by the decimal rule)."""
    out = mp_build(SmallAvg, tmp_path, capsys)
    m = manifest_of(out)
    values = np.array([int(v) for v in (out / "mp-spdz/Player-Data/Input-P0-0").read_text().split()])
    conv = next(f for f in m["files"] if f["role"] == "parameter" and f["tensor"].startswith("conv") and f["param"] == "weight")
    weight = np.array([round(float(v) * 4096) for v in (out / conv["path"]).read_text().split()]).reshape(conv["shape"])
    assert values[:weight.size].tolist() == weight.transpose(0, 2, 3, 1).ravel().tolist()
    image = next(f for f in m["files"] if f["role"] == "input" and f["execution"] == 1)
    pixels = np.array([round(float(v) * 4096) for v in (out / image["path"]).read_text().split()]).reshape(image["shape"])
    assert values[-pixels.size:].tolist() == pixels.transpose(1, 2, 0).ravel().tolist()


def test_a_tampered_mp_spdz_file_fails_verify(tmp_path, capsys):
    out = mp_build(SmallAvg, tmp_path, capsys)
    path = out / "mp-spdz/Player-Data/Input-P0-0"
    path.write_text(path.read_text().replace(" ", "  ", 1))
    code, _, err = run_cli(["verify", out, "--no-onnx"], capsys)
    assert code != 0 and "Input-P0-0" in err


@pytest.mark.parametrize("flags, refused", [(["--truncation", "probabilistic"], "--truncation probabilistic"),
                                             (["--convolution", "winograd"], "--convolution winograd"),
                                             (["--weights", "public"], "--weights public"),
                                             (["--sparsity", "public"], "--sparsity public"),
                                             (["--debug"], "--debug"),
                                             (["--protocol", "spdz2k"], "--protocol 'spdz2k'")])
def test_options_the_backend_cannot_honour_are_refused_in_one_line(tmp_path, capsys, flags, refused):
    from conftest import SEED_MODEL

    code, _, err = run_cli(["build", SEED_MODEL, "--out", tmp_path / "o", "--backend", "mp-spdz", *flags], capsys)
    assert code == 2 and refused in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_protocol_needs_the_mp_spdz_backend(tmp_path, capsys):
    from conftest import SEED_MODEL

    code, _, err = run_cli(["build", SEED_MODEL, "--out", tmp_path / "o", "--protocol", "ring"], capsys)
    assert code == 2 and "--protocol is for --backend mp-spdz" in err


def test_the_field_domain_follows_the_widest_declared_step(tmp_path, capsys):
    out = mp_build(SmallStrided, tmp_path, capsys, protocol="shamir", extra=["--total-bits", "36"])
    domain = manifest_of(out)["mp_spdz"]["domain"]
    assert domain["kind"] == "prime" and domain["bit_length"] == 72 and domain["prime_bits_at_least"] == 72 + 41


def test_a_fanng_build_is_refused_by_name_with_backend_mp_spdz(tmp_path, capsys):
    out = build_small(SmallAvg, tmp_path, capsys)
    code, _, err = run_cli(["run", out, "--runtime", tmp_path, "--backend", "mp-spdz"], capsys)
    assert code == 2 and "built with --backend fanng" in err


# ---- MP-SPDZ's compiler and real 3-party runs

def _counts(mp_spdz, out, tmp_path):
    from mpc_export.backends.mpspdz.runtime import compile_program

    m = manifest_of(out)
    work = tmp_path / "compile"
    work.mkdir()
    counts, _ = compile_program(mp_spdz, out / m["program"]["path"], work, m["mp_spdz"]["compile_flags"], 600)
    return m, counts["requires"]


@pytest.mark.runtime
@pytest.mark.parametrize("module_cls", [SmallResidual, SmallVGG, SmallStrided, SmallPools, SmallAvg])
def test_the_cost_reports_dot_products_products_and_inputs_as_mp_spdzs_compiler_counts_them(module_cls, mp_spdz, tmp_path, capsys):
    out = mp_build(module_cls, tmp_path, capsys)
    m, requires = _counts(mp_spdz, out, tmp_path)
    executions = len(m["executions"])
    assert requires["integer dot products"] == m["cost"]["totals"]["dot_products"] * executions
    # the selections (ReLU, maxima) and the x new_gamma products: MP-SPDZ's "simple" (non-dot) multiplications
    assert requires["integer simple multiplications"] == m["cost"]["totals"]["multiplications"] * executions
    assert requires["integer inputs from player 0"] == len((out / "mp-spdz/Player-Data/Input-P0-0").read_text().split())


def _run(out, mp_spdz, capsys):
    code, text, err = run_cli(["run", out, "--runtime", mp_spdz], capsys)
    assert code == 0, err + text
    assert "max |MPC - reference| = 0 ulp" in text
    return text


def _logit_lines(out):
    log = sorted((out / "run-logs").glob("run-*/P0.log"))[-1]
    return {tuple(int(v) for v in line.split()[1:3]): int(line.split()[3])
            for line in log.read_text().splitlines() if line.startswith("LOGIT")}


def _assert_reference_logits(out):
    printed = _logit_lines(out)
    for execution in manifest_of(out)["executions"]:
        assert [printed[(execution["index"], j)] for j in range(len(execution["logits"]))] == execution["logits"]


@pytest.mark.runtime
@pytest.mark.parametrize("module_cls", SMALL)
def test_every_small_model_runs_bit_exact_on_the_semi_honest_ring(module_cls, mp_spdz, tmp_path, capsys):
    out = mp_build(module_cls, tmp_path, capsys, protocol="ring")
    _run(out, mp_spdz, capsys)
    _assert_reference_logits(out)


@pytest.mark.runtime
@pytest.mark.parametrize("module_cls, protocol", [(SmallVGG, "sy-rep-ring"), (SmallResidual, "sy-rep-ring"),
                                                  (SmallPools, "shamir"), (SmallStrided, "sy-rep-field")])
def test_malicious_and_field_protocols_print_the_reference_logits(module_cls, protocol, mp_spdz, tmp_path, capsys):
    out = mp_build(module_cls, tmp_path, capsys, protocol=protocol)
    text = _run(out, mp_spdz, capsys)
    assert f"MPC run ({protocol})" in text
    _assert_reference_logits(out)


@pytest.mark.runtime
def test_the_option_a_shortcut_runs_bit_exact(mp_spdz, tmp_path, capsys):
    """shortcut_a (stride-2 subsample, zero channels on both sides), the one op no small model above has."""

    torch.manual_seed(3)
    model = randomise_batchnorm(OptionANet("flatten", True)).eval()
    path = tmp_path / "option_a.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, 8, 8), str(path), dynamo=False)
    image = tmp_path / "img.npy"
    np.save(image, np.random.default_rng(5).random((3, 8, 8)))
    out = tmp_path / "out"
    code, _, err = run_cli(["build", path, "--out", out, "--input", image, "--backend", "mp-spdz", "--protocol", "ring", "--json"], capsys)
    assert code == 0, err
    assert "shortcut_a" in {layer["op"] for layer in manifest_of(out)["layers"]}
    _run(out, mp_spdz, capsys)
    _assert_reference_logits(out)


@pytest.mark.runtime
def test_each_partys_run_root_holds_only_its_own_files(mp_spdz, tmp_path, capsys):
    from mpc_export.backends.mpspdz.runtime import MpSpdzRunOptions, run

    out = mp_build(SmallAvg, tmp_path, capsys)
    result = run(MpSpdzRunOptions(directory=out, runtime=mp_spdz, keep=True), progress=lambda _: None)
    try:
        for party in result.parties:
            data = [f for f in party.files if f.startswith("Player-Data/")]
            keys = [f for f in data if f.endswith(".key")]
            assert keys == [f"Player-Data/P{party.party}.key"]
            assert ("Player-Data/Input-P0-0" in data) == (party.party == 0)
            assert not any("Input" in f for f in data if party.party)
            assert party.data_sent_mb is not None and party.rounds and party.peak_mb > 0
        assert result.time_s is not None and result.global_data_mb is not None
        key = result.root / "party-1" / "Player-Data" / "P1.key"
        assert oct(key.stat().st_mode & 0o777) == "0o600"
    finally:
        import shutil

        shutil.rmtree(result.root, ignore_errors=True)


@pytest.mark.runtime
def test_run_refuses_a_tampered_program_before_any_party_starts(mp_spdz, tmp_path, capsys):
    out = mp_build(SmallAvg, tmp_path, capsys)
    program = out / "mp-spdz" / "mpc_export_small.mpc"
    program.write_text(program.read_text().replace("print_ln('LOGIT", "print_ln(L0.get_vector().reveal()); print_ln('LOGIT"))
    code, _, err = run_cli(["run", out, "--runtime", mp_spdz], capsys)
    assert code != 0 and "mpc_export_small.mpc" in err
    assert not (out / "run-logs").exists()


@pytest.mark.runtime
def test_hostile_names_never_reach_the_mp_spdz_program(mp_spdz, tmp_path, capsys):
    """Every tensor and node named with code, quotes and paths: the program holds none of it (not even in
    a comment; the file name reaches it only as the sanitised identifier of its name), compiles, and prints
    the reference's logits."""
    import onnx


    torch.manual_seed(2)
    path = tmp_path / "plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SmallResidual().eval(), torch.zeros(1, 3, 8, 8), str(path), dynamo=False)
    hostile = tmp_path / "x\"'; print_ln('pwned').onnx"
    onnx.save(rename_everything(onnx.load(str(path)), HOSTILE * 3), str(hostile))
    out = tmp_path / "out"
    code, _, err = run_cli(["build", hostile, "--out", out, "--backend", "mp-spdz", "--protocol", "ring", "--json"], capsys)
    assert code == 0, err
    program = (out / manifest_of(out)["program"]["path"]).read_text()
    assert not [name for name in HOSTILE if not name.isidentifier() and name in program]
    assert "'pwned'" not in program and "import os" not in program and "../" not in program
    text = _run(out, mp_spdz, capsys)
    assert "pwned" not in text
    _assert_reference_logits(out)


def test_cost_of_an_mp_spdz_build_counts_dot_products_per_layer(tmp_path, capsys):
    out = mp_build(SmallVGG, tmp_path, capsys)
    code, text, err = run_cli(["cost", out], capsys)
    assert code == 0, err
    assert "dot products" in text and "sy-rep-ring" not in text and "protocol ring" in text
    code, text, _ = run_cli(["cost", out, "--json"], capsys)
    report = json.loads(text)["cost"]
    # a dot product per output of every convolution (before its fused pools) and dense layer
    layers = {layer["name"]: layer for layer in manifest_of(out)["layers"]}
    rows = {row["node"]: row for row in report["layers"]}
    for name, layer in layers.items():
        if layer["op"] == "dense":
            assert rows[name]["dot_products"] == layer["shape"][0]
    assert report["totals"]["dot_products"] == sum(r["dot_products"] for r in report["layers"]) > 0


@pytest.mark.runtime
def test_three_parties_in_three_network_namespaces_from_their_bundles(mp_spdz, namespaces, tmp_path, capsys):
    """Three hosts on one machine (network namespaces, traffic only between them): `mpc-export bundle` on an
    MP-SPDZ build, each party started from its own bundle's run-party.sh; party 0's output holds the
    reference logits (verify --mpc-log), and parties 1 and 2 never held an input or another party's key."""
    spaces = namespaces
    out = mp_build(SmallResidual, tmp_path, capsys, protocol="sy-rep-ring")
    hosts = ",".join(spaces.addresses)
    code, text, err = run_cli(["bundle", out, "--out", tmp_path / "bundles", "--hosts", hosts, "--port-base", "14300"], capsys)
    assert code == 0, err
    assert "./run-party.sh MP_SPDZ_DIR" in " ".join(text.split())
    bundles = [tmp_path / "bundles" / f"player-{p}" for p in range(3)]
    for bundle in bundles:
        code, _, err = run_cli(["check-bundle", bundle], capsys)
        assert code == 0, err
    codes, texts = spaces.run([["bash", str(bundle / "run-party.sh"), str(mp_spdz)] for bundle in bundles], tmp_path, 300)
    assert codes == [0, 0, 0], "\n".join(t[-1500:] for t in texts)
    code, text, err = run_cli(["verify", out, "--mpc-log", tmp_path / "P0.out", "--no-onnx"], capsys)
    assert code == 0, err
    assert "max |MPC - reference| = 0 ulp" in text
    for p, bundle in enumerate(bundles):
        names = {q.name for q in (bundle / "run").rglob("*") if q.is_file() and not q.is_symlink()}
        assert {f"P{q}.key" for q in range(3)} & names == {f"P{p}.key"}
        assert ("Input-P0-0" in names) == (p == 0)


@pytest.mark.runtime
def test_cost_with_the_runtime_prints_the_compilers_own_counts(mp_spdz, tmp_path, capsys):
    """The numbers come from MP-SPDZ's compile.py itself: its "Program requires" block, re-parsed here."""
    out = mp_build(SmallPools, tmp_path, capsys, protocol="sy-rep-ring")
    m = manifest_of(out)
    work = tmp_path / "own"
    work.mkdir()
    (work / "p.mpc").write_text((out / m["program"]["path"]).read_text())
    done = subprocess.run([sys.executable, os.path.join(mp_spdz, "compile.py"), *m["mp_spdz"]["compile_flags"], "p.mpc"],
                          cwd=work, capture_output=True, text=True, check=True)
    block = done.stdout.split("Program requires at most:")[1].splitlines()
    expected = {}
    for line in block[1:]:
        parts = line.split(None, 1)
        if len(parts) != 2 or not parts[0].isdigit():
            break
        expected[parts[1].strip()] = expected.get(parts[1].strip(), 0) + int(parts[0])
    code, text, err = run_cli(["cost", out, "--runtime", mp_spdz, "--json"], capsys)
    assert code == 0, err
    assert json.loads(text)["compiler"]["requires"] == expected and "integer dot products" in expected
    code, text, err = run_cli(["cost", out, "--runtime", mp_spdz], capsys)
    assert code == 0 and "expected communication" in text


def test_bundle_refuses_compile_flags_that_are_not_the_builds(tmp_path, capsys):
    """run-party.sh takes its compile.py flags from the manifest: flags other than those the build's declared
    steps give (here a 64-bit ring for 82-bit steps) are refused before any bundle is written, as run does."""
    out = mp_build(SmallAvg, tmp_path, capsys)
    manifest = manifest_of(out)
    manifest["mp_spdz"]["compile_flags"] = ["-E", "ring", "-R", "64", "-M"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(["bundle", out, "--out", tmp_path / "bundles", "--hosts", "127.0.0.1,127.0.0.1,127.0.0.1"], capsys)
    assert code != 0 and "compile_flags" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bundles").exists()
