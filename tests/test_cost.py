"""The cost report against the real MAMBA compiler: the preprocessing a program requires (triples and
random bits, which the compiler counts through every run-time loop) must equal what the report's
multiplications, truncations and comparisons imply, each protocol's price measured by compiling a
one-call program with the same compiler."""

import ast
import functools
import json
import subprocess

import pytest

from conftest import COMPILER, SEED_MODEL, SHARED, need_shared

MICRO = """from Compiler import AdvInteger
a = sint.get_private_input_from(0)
{body}
print_ln("%s", r.reveal())
"""


def requires(program_dir) -> tuple[int, int]:
    proc = subprocess.run([str(COMPILER), str(program_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    need = ast.literal_eval(summary["requires"]) if summary.get("requires") else {}
    return need.get(("modp", "triple"), 0), need.get(("modp", "bit"), 0)


@functools.lru_cache(maxsize=None)
def price(tmp_root, body: str) -> tuple[int, int]:
    """(triples, bits) of one call, from a compiled program minus the same program without it."""
    from pathlib import Path

    def compile_body(name, text):
        folder = Path(tmp_root) / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.mpc").write_text(MICRO.format(body=text))
        return requires(folder)

    base = compile_body("base", "r = a")
    name = "p" + str(abs(hash(body)))
    got = compile_body(name, body)
    return got[0] - base[0], got[1] - base[1]


@pytest.mark.parametrize("model", ["pruned_resnet", "resnet20", "custresnet"])
def test_compiler_requirements_match_the_cost_report(model, tmp_path):
    from mpc_export.cli.build import BuildOptions, build

    need_shared(COMPILER)
    path = SEED_MODEL if model == "pruned_resnet" else need_shared(SHARED / "fixtures" / f"{model}_cifar10.pth")
    manifest = build(BuildOptions(model=path, out=tmp_path / "out"))
    program = tmp_path / "out" / "program" / manifest["program"]["name"]
    triples, bits = requires(program)
    totals = manifest["cost"]["totals"]
    want_triples, want_bits = totals["multiplications"], 0
    root = str(tmp_path / "micro")
    for bit_length, n in totals["comparisons_by_bits"].items():
        t, b = price(root, f"r = sint()\nAdvInteger.LTZ(r, a, {bit_length}, 40)")
        want_triples += n * t
        want_bits += n * b
    for shape, n in totals["truncations_by_shape"].items():
        k, m = shape.split(",")
        t, b = price(root, f"r = AdvInteger.TruncPr(a, {k}, {m}, 40)")
        want_triples += n * t
        want_bits += n * b
    assert (triples, bits) == (want_triples, want_bits)
