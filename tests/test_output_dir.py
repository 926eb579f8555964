"""The output directory is never collateral: --force replaces only an earlier build, never the working
directory, a parent of it, the home directory or one holding the model or an input; a directory that
appears during a build is not deleted; concurrent builds to one directory: one wins, the other fails
cleanly; directories get the user's umask."""

import os
import shutil
import threading

import pytest

from conftest import SEED_MODEL, run_cli


def _one_line(code, err, text):
    assert code == 2, err
    assert text in err and len(err.strip().splitlines()) == 1, err


def test_force_refuses_the_working_directory_and_its_parents(tmp_path, monkeypatch, capsys):
    work = tmp_path / "project" / "sub"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("precious")
    model = tmp_path / "model.pth"
    shutil.copy(SEED_MODEL, model)
    monkeypatch.chdir(work)
    for out in (".", "..", str(tmp_path)):
        code, _, err = run_cli(["build", model, "--out", out, "--force"], capsys)
        _one_line(code, err, "refusing to use")
    assert (work / "keep.txt").read_text() == "precious"


def test_force_refuses_a_directory_holding_the_model_or_not_written_by_build(tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    model = folder / "model.pth"
    shutil.copy(SEED_MODEL, model)
    code, _, err = run_cli(["build", model, "--out", folder, "--force"], capsys)
    _one_line(code, err, "holds")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("mine")
    code, _, err = run_cli(["build", model, "--out", other, "--force"], capsys)
    _one_line(code, err, "not a directory an earlier")
    assert (other / "a.txt").read_text() == "mine" and model.exists()


def test_force_replaces_an_earlier_build_and_leaves_nothing_beside_it(tmp_path, capsys):
    out = tmp_path / "out"
    for _ in range(2):
        code, _, err = run_cli(["build", SEED_MODEL, "--out", out, "--force", "--json"], capsys)
        assert code == 0, err
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging, lock or old build left
    code, _, err = run_cli(["verify", out, "--no-onnx"], capsys)
    assert code == 0, err


def test_directory_appearing_during_a_build_is_kept(tmp_path, monkeypatch):
    from mpc_export.pipeline import build as build_module
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.errors import UserError

    out = tmp_path / "out"
    real = build_module.data_products

    def slow(*args, **kwargs):
        out.mkdir()
        (out / "theirs.txt").write_text("someone else's")
        return real(*args, **kwargs)

    monkeypatch.setattr(build_module, "data_products", slow)
    with pytest.raises(UserError, match="appeared while building"):
        build(BuildOptions(model=SEED_MODEL, out=out))
    assert (out / "theirs.txt").read_text() == "someone else's"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging, lock or old build left


def test_concurrent_builds_one_wins_the_other_fails_cleanly(tmp_path):
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.errors import UserError

    out = tmp_path / "out"
    results = []

    def one():
        try:
            build(BuildOptions(model=SEED_MODEL, out=out, force=True))
            results.append("ok")
        except UserError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "ok" in results
    assert all(r == "ok" or "another mpc-export build is writing" in r or "appeared while building" in r for r in results), results
    assert (out / "manifest.json").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging, lock or old build left


def test_directories_get_the_users_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        code, _, err = run_cli(["build", SEED_MODEL, "--out", tmp_path / "out", "--json"], capsys)
    finally:
        os.umask(old)
    assert code == 0, err
    for directory in [tmp_path / "out", *[p for p in (tmp_path / "out").rglob("*") if p.is_dir()]]:
        assert directory.stat().st_mode & 0o777 == 0o755, directory


def test_force_never_deletes_a_file_the_build_reads_or_someone_added(tmp_path, capsys):
    """The calibration data set and the channel map are inputs too; a manifest that merely says
    "tool": "mpc-export" does not make a directory the tool's; a build with a file added to it is no longer
    only the tool's."""
    import json

    import numpy as np

    out = tmp_path / "out"
    code, _, err = run_cli(["build", SEED_MODEL, "--out", out, "--json"], capsys)
    assert code == 0, err
    data = out / "calib.npz"
    np.savez(data, x=np.zeros((2, 32, 32, 3), dtype=np.uint8), y=np.zeros(2, dtype=np.int64))
    code, _, err = run_cli(["build", SEED_MODEL, "--out", out, "--force", "--calibrate", data], capsys)
    _one_line(code, err, "an input of this build")
    assert data.exists()
    data.unlink()
    from mpc_export.export.channels import DEFAULT_MAP

    channel_map = out / "map.toml"
    channel_map.write_text(DEFAULT_MAP.read_text())
    code, _, err = run_cli(["build", SEED_MODEL, "--out", out, "--force", "--channel-map", channel_map], capsys)
    _one_line(code, err, "an input of this build")
    assert channel_map.exists()
    channel_map.unlink()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(["build", SEED_MODEL, "--out", out, "--force"], capsys)
    _one_line(code, err, "notes.txt is not a file the build wrote")
    assert (out / "notes.txt").read_text() == "mine"
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text(json.dumps({"tool": "mpc-export", "files": []}))
    (fake / "thesis.tex").write_text("years of work")
    code, _, err = run_cli(["build", SEED_MODEL, "--out", fake, "--force"], capsys)
    _one_line(code, err, "thesis.tex is not a file the build wrote")
    assert (fake / "thesis.tex").exists()


def test_force_replaces_a_build_with_its_run_logs(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["build", SEED_MODEL, "--out", out, "--json"], capsys)
    assert code == 0, err
    (out / "run-logs" / "run-1").mkdir(parents=True)
    (out / "run-logs" / "run-1" / "P0.log").write_text("LOGIT 0 0 1\n")
    code, _, err = run_cli(["build", SEED_MODEL, "--out", out, "--force", "--json"], capsys)
    assert code == 0, err
