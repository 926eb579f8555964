"""Names never become code or paths: an ONNX model whose every tensor and node name (and its file name)
is hostile (newlines with Python after them, quotes, ``../``, leading digits, names equal after
sanitising) still gives a program that compiles with the real MAMBA compiler and computes the right
network (executed on clear integers, its logits equal the reference and the float model's class), with
every file inside the output directory."""

import warnings

import onnx
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import COMPILER, need_shared
from mamba_plaintext import run_program
from small_models import SmallResidual
from helpers import compiler_requires, HOSTILE, rename_everything

pytestmark = pytest.mark.slow


names = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=10)), min_size=40, max_size=40)
file_names = st.text(alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    torch.manual_seed(2)
    model = SmallResidual().eval()
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, 8, 8), str(path), dynamo=False)
    return onnx.load(str(path)), model


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(wanted=names, file_name=file_names)
def test_hostile_names_give_a_safe_program_that_computes_the_network(small_onnx, wanted, file_name, tmp_path_factory):
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.pipeline.verify import VerifyOptions, verify

    need_shared(COMPILER)
    base, _ = small_onnx
    tmp = tmp_path_factory.mktemp("hostile")
    path = tmp / f"{file_name}.onnx"
    onnx.save(rename_everything(base, wanted), str(path))
    out = tmp / "out"
    manifest = build(BuildOptions(model=path, out=out))
    # every file inside the output directory, under a name the tool chose
    root = out.resolve()
    for entry in manifest["files"]:
        assert (out / entry["path"]).resolve().is_relative_to(root), entry["path"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        sorted([f["path"] for f in manifest["files"]] + ["manifest.json"])
    program_dir = out / "program" / manifest["program"]["name"]
    program = program_dir / f"{manifest['program']['name']}.mpc"
    # no model name reaches a line of code: each non-comment line is the tool's own
    code_lines = [line for line in program.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not any("pwned" in line or "import os" in line for line in code_lines)
    compiler_requires(program_dir)  # the real compiler accepts it
    machine = run_program(program, out, out / "io_answers.txt", manifest["fixed_point"]["reading_precision"])
    assert not any("pwned" in line for line in machine.printed)
    logits = {tuple(line.split()[1:3]): int(line.split()[3]) for line in machine.printed if line.startswith("LOGIT")}
    assert [logits[("0", str(j))] for j in range(3)] == manifest["executions"][0]["logits"]
    report = verify(VerifyOptions(directory=out))
    assert report["ok"], [r for r in report["layers"] if not r["ok"]]
