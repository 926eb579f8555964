"""`mpc-export run` against hostile build directories and a hostile machine, in seconds: a stand-in runtime
(a PlayerBinary.x script and a compile-mamba.py that only marks the program compiled) takes the real
runtime's place, so every refusal is checked without 3 players of ~5 GB each. The real runtime's side
(the check refusing FANNG's config.h as shipped, logits equal) is in tests/test_runtime.py."""

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from small_models import SmallAvg, build_small

FAKE_PLAYER = r"""#!{python}
# a stand-in for FANNG's PlayerBinary.x: -pnb PORT PLAYER Programs/NAME; prints what FAKE_MODE says
import os, sys
player = int(sys.argv[3])
mode = open(os.path.join(os.path.dirname(os.path.realpath(__file__)), "mode")).read().strip()
out = sys.stdout
for _ in range(20000):
    out.write("Not Enough Random Beaver triples loaded to the memory, switching to Offline Factory Generation\n")
if mode == "zero_triples":
    out.write("RUNTIME CHECK FAILED: the runtime's Beaver triples are not random (stand-in)\nCrashing in thread 0 at PC value 9\n")
    sys.exit(1)
if mode == "silent":
    sys.exit(0)
out.write("RUNTIME CHECK passed\n")
if mode == "passed" and player == 0:
    out.write(open(os.path.join(os.path.dirname(os.path.realpath(__file__)), "logits")).read())
sys.exit(0)
"""

FAKE_COMPILER = """import sys, pathlib
target = pathlib.Path(sys.argv[-1])
(target / (target.name + ".sch")).write_text("compiled\\n")
"""


def _fake_runtime(root: Path, mode: str, logits: str = "") -> Path:
    runtime = root / "fake-runtime"
    for name in ("Cert-Store", "Circuits", "Data"):
        (runtime / name).mkdir(parents=True)
    (runtime / "Data" / "NetworkData.txt").write_text("RootCA.crt\n3\n")
    player = runtime / "PlayerBinary.x"
    player.write_text(FAKE_PLAYER.format(python=sys.executable))
    player.chmod(player.stat().st_mode | stat.S_IXUSR)
    (runtime / "compile-mamba.py").write_text(FAKE_COMPILER)
    (runtime / "mode").write_text(mode)
    (runtime / "logits").write_text(logits)
    return runtime


def _logit_lines(manifest) -> str:
    return "".join(f"LOGIT {e['index']} {j} {v}\n" for e in manifest["executions"] for j, v in enumerate(e["logits"]))


@pytest.fixture
def built(tmp_path, capsys):
    out = build_small(SmallAvg, tmp_path, capsys)
    return out, json.loads((out / "manifest.json").read_text())


def _run(out, runtime, capsys, *extra):
    return run_cli(["run", out, "--runtime", runtime, "--timeout", "60", *extra], capsys)


def _one_error(err) -> str:
    """The single error line (progress lines may precede it on stderr)."""
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    return errors[0]


def _files_outside(tmp_path, out) -> set:
    return {p for p in tmp_path.rglob("*") if not p.is_relative_to(out) and "fake-runtime" not in p.parts}


def test_a_passing_run_streams_filtered_logs_into_a_fresh_directory(built, tmp_path, capsys):
    out, manifest = built
    runtime = _fake_runtime(tmp_path, "passed", _logit_lines(manifest))
    code, stdout, err = _run(out, runtime, capsys)
    assert code == 0, stdout + err
    assert "runtime check: passed" in " ".join(stdout.split())
    assert re.search(r"estimated [\d.]+ min of player time", " ".join(err.split()))
    log = out / "run-logs" / "run-1" / "P0.log"
    text = log.read_text()
    assert "Not Enough Random" not in text.replace("'Not Enough Random ... loaded", "")  # 20,000 lines, counted
    assert "[mpc-export: 20,000 lines" in text
    assert log.stat().st_size < 2000
    code, _, err = _run(out, runtime, capsys)
    assert code == 0 and (out / "run-logs" / "run-2" / "P0.log").is_file()  # a fresh directory each run


def test_a_runtime_whose_preprocessing_the_program_refused_is_refused_in_one_line(built, tmp_path, capsys):
    out, _ = built
    code, stdout, err = _run(out, _fake_runtime(tmp_path, "zero_triples"), capsys)
    assert code == 2
    line = _one_error(err)
    assert "RUNTIME CHECK FAILED" in line and "Beaver triples are not random" in line


def test_a_program_without_the_check_is_not_taken_as_a_run(built, tmp_path, capsys):
    out, _ = built
    code, _, err = _run(out, _fake_runtime(tmp_path, "silent"), capsys)
    assert code == 1 and "runtime check printed nothing" in err


def _forge(out, edit):
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("case", ["absolute_program_path", "parent_program_path", "unlisted_program_under_run_logs",
                                  "program_name_with_dots", "data_folder_outside"])
def test_paths_read_from_the_build_must_be_its_own_checked_files(built, tmp_path, capsys, case):
    out, manifest = built
    evil = tmp_path / "evil.mpc"
    evil.write_text("print_ln('%s', sint.get_private_input_from(0).reveal())\n")
    if case == "absolute_program_path":
        _forge(out, lambda m: m["program"].update(path=str(evil)))
    elif case == "parent_program_path":
        _forge(out, lambda m: m["program"].update(path="../evil.mpc"))
    elif case == "unlisted_program_under_run_logs":
        (out / "run-logs").mkdir()
        (out / "run-logs" / "x.mpc").write_text(evil.read_text())
        _forge(out, lambda m: m["program"].update(path="run-logs/x.mpc"))
    elif case == "program_name_with_dots":
        _forge(out, lambda m: m["program"].update(name="../../escaped"))
    else:
        _forge(out, lambda m: m.update(data_folder="../elsewhere"))
    before = _files_outside(tmp_path, out)
    runtime = _fake_runtime(tmp_path, "passed", _logit_lines(manifest))
    code, stdout, err = _run(out, runtime, capsys)
    assert code in (1, 2) and len(err.strip().splitlines()) == 1, err  # refused before anything starts
    assert not (out / "run-logs" / "run-1").exists()  # no player started
    assert _files_outside(tmp_path, out) - before <= {runtime}


def test_a_symlink_planted_for_the_logs_is_refused(built, tmp_path, capsys):
    out, manifest = built
    target = tmp_path / "precious"
    target.mkdir()
    (out / "run-logs").symlink_to(target)
    code, _, err = _run(out, _fake_runtime(tmp_path, "passed", _logit_lines(manifest)), capsys)
    assert code != 0 and "run-logs" in _one_error(err)
    assert list(target.iterdir()) == []
    (out / "run-logs").unlink()
    (out / "run-logs").mkdir()
    (out / "run-logs" / "run-1").symlink_to(target)  # a link where the next log directory would go
    code, _, err = _run(out, _fake_runtime(tmp_path / "again", "passed", _logit_lines(manifest)), capsys)
    assert code == 0, err
    assert list(target.iterdir()) == [] and (out / "run-logs" / "run-2" / "P0.log").is_file()


def test_the_lock_is_per_user_and_never_followed(built, tmp_path, capsys, monkeypatch):
    out, manifest = built
    runtime = _fake_runtime(tmp_path, "passed", _logit_lines(manifest))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    (tmp_path / "xdg" / "mpc-export").mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (tmp_path / "xdg" / "mpc-export" / "run.lock").symlink_to(victim)
    code, _, err = _run(out, runtime, capsys)
    assert code == 2 and "run lock" in _one_error(err) and victim.read_text() == "keep me\n"
    (tmp_path / "xdg" / "mpc-export" / "run.lock").unlink()
    os.chmod(tmp_path / "xdg" / "mpc-export", 0o777)
    code, _, err = _run(out, runtime, capsys)
    assert code == 2 and "others can write it" in _one_error(err)
    os.chmod(tmp_path / "xdg" / "mpc-export", 0o700)
    code, stdout, err = _run(out, runtime, capsys)
    assert code == 0, err


def test_player_zero_gets_no_expected_outputs_and_the_others_no_input(built, tmp_path, capsys):
    out, manifest = built
    code, stdout, err = _run(out, _fake_runtime(tmp_path, "passed", _logit_lines(manifest)), capsys, "--keep")
    assert code == 0, err
    kept = Path(re.search(r"kept run roots: (\S+)", stdout).group(1))
    try:
        folder = manifest["data_folder"]
        by_role = {}
        for entry in manifest["files"]:
            by_role.setdefault(entry["role"], set()).add(entry["path"])
        held = [{p.relative_to(kept / f"P{i}" / "Data").as_posix() for p in (kept / f"P{i}" / "Data" / folder).rglob("*") if p.is_file()}
                if (kept / f"P{i}" / "Data" / folder).exists() else set() for i in range(3)]
        assert held[0] == by_role["parameter"] | by_role["input"]
        assert held[1] == held[2] == set()
    finally:
        import shutil

        shutil.rmtree(kept, ignore_errors=True)
