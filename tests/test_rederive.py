"""verify re-derives every file from the model and the recorded options, byte for byte: edits with a
manifest whose SHA-256 values were updated to match are still caught, as are unlisted files, manifest
paths outside the directory and symlinks; run makes the same check before any player starts."""

import hashlib
import json
import os

import pytest

from conftest import run_cli
from small_models import SmallAvg, build_small


def _rehash(out, rel):
    """Update the manifest to the file's new hash, as an attacker who controls the directory would."""
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == rel:
            data = (out / rel).read_bytes()
            entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (out / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def small(tmp_path, capsys):
    return build_small(SmallAvg, tmp_path, capsys)


def program_path(out):
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest["program"]["path"]


def test_untouched_build_reports_each_integrity_check(small, capsys):
    code, out, err = run_cli(["verify", small, "--no-onnx"], capsys)
    assert code == 0, err
    assert "re-derived from the model and the recorded options, byte for byte equal" in " ".join(out.split())


def test_program_edited_to_print_the_input_is_caught_despite_a_matching_hash(small, capsys):
    rel = program_path(small)
    text = (small / rel).read_text()
    (small / rel).write_text(text + '\nprint_ln("%s", INPUT_STAGING[0].reveal())\n')
    _rehash(small, rel)
    code, out, err = run_cli(["verify", small, "--no-onnx"], capsys)
    assert code == 1 and rel in err and "differs from what the model" in err


def test_edited_io_answers_are_caught_despite_a_matching_hash(small, capsys):
    text = (small / "io_answers.txt").read_text().splitlines()
    text[1], text[2] = text[2], text[1]  # two channels answered with each other's file
    (small / "io_answers.txt").write_text("\n".join(text) + "\n")
    _rehash(small, "io_answers.txt")
    code, out, err = run_cli(["verify", small, "--no-onnx"], capsys)
    assert code == 1 and "io_answers.txt" in err


def test_unlisted_file_is_reported(small, capsys):
    (small / "program" / "helper.mpc").write_text("print_ln('hello')\n")
    code, out, err = run_cli(["verify", small, "--no-onnx"], capsys)
    assert code == 1 and "program/helper.mpc: not a file build writes" in err


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.txt", "x/../../outside.txt"])
def test_manifest_paths_outside_the_directory_are_refused(small, path, tmp_path, capsys):
    (tmp_path / "outside.txt").write_text("1 2 3\n")
    manifest = json.loads((small / "manifest.json").read_text())
    manifest["files"][0]["path"] = path
    (small / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run_cli(["verify", small, "--no-onnx"], capsys)
    assert code == 1 and "not a relative path inside the directory" in err


def test_symlinked_file_is_refused(small, tmp_path, capsys):
    manifest = json.loads((small / "manifest.json").read_text())
    rel = manifest["files"][0]["path"]
    target = tmp_path / "elsewhere.txt"
    target.write_bytes((small / rel).read_bytes())
    os.remove(small / rel)
    os.symlink(target, small / rel)
    code, out, err = run_cli(["verify", small, "--no-onnx"], capsys)
    assert code == 1 and "symbolic link" in err
