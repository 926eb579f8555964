"""The program checks its runtime before any secret enters (mpc_export/backends/mamba/runtime_check.py).

Fast: the plaintext interpreter (tests/mamba_plaintext.py) runs a generated program with random
preprocessing (it passes and goes on), with zero Beaver triples (FANNG's config.h as shipped) and with
constant random bits: each of the latter stops at crash() with its one line, before any channel opens.
Slow: the real compiler's instructions show that the check draws every kind of preprocessing the whole
program consumes, opens it and can crash, all before the first open_channel."""

import json
import os
import re
import subprocess

import pytest

from conftest import COMPILER, need_shared
from mamba_plaintext import Crashed, run_program
from small_models import SmallOddKernels, SmallResidual, build_small

# the preprocessing instructions of the MAMBA instruction set (../shared/docs-mamba: DATA instructions)
PREPROCESSING_OPCODES = {"triple", "bit", "square", "dabit"}


def program_path(out):
    manifest = json.loads((out / "manifest.json").read_text())
    name = manifest["program"]["name"]
    return manifest, out / "program" / name / f"{name}.mpc"


class _NoCapture:
    """Stands in for capsys in a module-scoped fixture (run_cli only reads the output back)."""

    @staticmethod
    def readouterr():
        return "", ""


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    return build_small(SmallResidual, tmp_path_factory.mktemp("guard"), _NoCapture())


def test_a_secure_runtime_passes_the_check_and_the_program_goes_on(small_build):
    manifest, program = program_path(small_build)
    machine = run_program(program, small_build, small_build / "io_answers.txt", manifest["fixed_point"]["reading_precision"])
    assert machine.printed[0] == "RUNTIME CHECK passed"
    assert any(line.startswith("LOGIT ") for line in machine.printed)
    assert machine.preprocessing_drawn["triple"] >= 4 and machine.preprocessing_drawn["bit"] >= 128


@pytest.mark.parametrize("preprocessing,cause", [("zero_triples", "Beaver triples are not random"),
                                                 ("constant_bits", "random bits are not random bits")])
def test_non_random_preprocessing_stops_the_program_before_any_input(small_build, preprocessing, cause):
    manifest, program = program_path(small_build)
    answers = small_build / "io_answers.txt"
    with pytest.raises(Crashed):
        run_program(program, small_build, answers, manifest["fixed_point"]["reading_precision"], preprocessing=preprocessing)
    # run again to read the machine's state at the crash: nothing opened, one line printed
    from mamba_plaintext import Machine

    seen = {}
    original = Machine.crash

    def record(self):
        seen["printed"], seen["opened"] = list(self.printed), list(self.opened)
        original(self)

    Machine.crash = record
    try:
        with pytest.raises(Crashed):
            run_program(program, small_build, answers, manifest["fixed_point"]["reading_precision"], preprocessing=preprocessing)
    finally:
        Machine.crash = original
    assert seen["opened"] == []
    assert len(seen["printed"]) == 1
    line = seen["printed"][0]
    assert line.startswith("RUNTIME CHECK FAILED") and cause in line
    assert "config.h" in line and "return_triple_zero" in line and "rebuild" in line


def test_the_cost_report_includes_the_check(small_build):
    manifest, _ = program_path(small_build)
    first = manifest["cost"]["layers"][0]
    assert first["node"] == "runtime_check" and first["triples"] == 4 and first["bits"] == 128
    layers = manifest["cost"]["layers"]
    assert manifest["cost"]["totals"]["triples"] == sum(row["triples"] for row in layers)


def _asm_instructions(asm_dir):
    """(opcode without its vector prefix, line) of every instruction, in the order of the .asm."""
    known = PREPROCESSING_OPCODES | {"open_channel", "crash", "startopen", "private_input", "input_shares"}
    found = []
    for asm in sorted(asm_dir.glob("*.asm")):
        for line in asm.read_text().splitlines():
            opcode = line.split(" ", 1)[0].strip()
            base = opcode[1:] if opcode.startswith("v") and opcode[1:] in known else opcode
            if base and not base.startswith("#"):
                found.append(base)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("module_cls,extra", [(SmallResidual, []), (SmallOddKernels, ["--truncation", "probabilistic"]),
                                              (SmallResidual, ["--weights", "public"])],
                         ids=["residual_exact", "odd_kernels_probabilistic", "residual_public_weights"])
def test_the_compiled_check_covers_every_kind_of_preprocessing_before_the_first_channel(module_cls, extra, tmp_path, capsys):
    need_shared(COMPILER)
    out = build_small(module_cls, tmp_path, capsys, extra=extra)
    manifest, program = program_path(out)
    keep = tmp_path / "asm"
    proc = subprocess.run([str(COMPILER), str(program.parent)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, MAMBA_COMPILE_OUT=str(keep)))
    assert proc.returncode == 0, proc.stderr[-1500:]
    opcodes = _asm_instructions(keep)
    first_channel = opcodes.index("open_channel")
    before, after = opcodes[:first_channel], opcodes[first_channel:]
    consumed = PREPROCESSING_OPCODES & set(opcodes)
    assert consumed, "the program consumes no preprocessing?"
    assert consumed <= set(before), f"kinds the check does not draw: {consumed - set(before)}"
    assert "crash" in before and "startopen" in before
    assert not {"private_input", "input_shares"} & set(before)  # nothing is input before the check
    assert "crash" not in after
    # the compiler's count includes the check once per program, the layers once per execution
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    executions = len(manifest["executions"])
    layers = manifest["cost"]["layers"]
    for kind, key in (("triple", "triples"), ("bit", "bits")):
        counted = int(re.search(r"\('modp', '%s'\): (\d+)" % kind, summary["requires"]).group(1))
        assert counted == layers[0][key] + executions * sum(row[key] for row in layers[1:])
