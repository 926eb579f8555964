"""The cost report against the real MAMBA compiler: the preprocessing a program requires (triples and
random bits, which the compiler counts through every run-time loop) must equal the report's totals, and
what its multiplications, truncations and comparisons imply with each protocol's price measured by
compiling a one-call program with the same compiler. Rounds per protocol call are checked against the
rounds measured with this compiler (../shared/notes/mpc-cost-facts.md)."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import COMPILER, SEED_MODEL, SHARED, need_shared
from small_models import SmallAddFlat, SmallOddKernels, SmallPools, SmallStridedFlat, SmallVGG, build_small
from helpers import assert_compiler_count_equals_report, compiler_requires, MICRO, price, truncation_body

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model,truncation,convolution,weights", [
    ("pruned_resnet", "exact", "winograd", "private"), ("pruned_resnet", "probabilistic", "direct", "private"),
    ("pruned_resnet", "exact", "winograd", "public"),
    ("resnet20", "exact", "winograd", "private"), ("custresnet", "exact", "winograd", "private")])
def test_compiler_requirements_match_the_cost_report(model, truncation, convolution, weights, tmp_path):
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.fixedpoint import FixedSpec, Protocol

    need_shared(COMPILER)
    path = SEED_MODEL if model == "pruned_resnet" else need_shared(SHARED / "fixtures" / f"{model}_cifar10.pth")
    manifest = build(BuildOptions(model=path, out=tmp_path / "out", fx=FixedSpec(protocol=Protocol(truncation, convolution, weights))))
    if weights == "public" and model == "pruned_resnet":  # the target: products with a weight are local
        assert manifest["cost"]["totals"]["triples"] <= 26_000_000
    assert_compiler_count_equals_report(manifest, tmp_path / "out" / "program" / manifest["program"]["name"], tmp_path)


@pytest.mark.parametrize("module_cls", [SmallPools, SmallVGG, SmallAddFlat, SmallStridedFlat, SmallOddKernels], ids=lambda c: c.__name__)
def test_compiler_requirements_match_the_cost_report_for_pools_anywhere(module_cls, tmp_path, capsys):
    """Pools as their own op (max after a ReLU or an add, 3x3 average with a rounded reciprocal), dense
    layers reading padded planes and strided grids."""
    need_shared(COMPILER)
    out = build_small(module_cls, tmp_path, capsys)
    manifest = json.loads((out / "manifest.json").read_text())
    assert_compiler_count_equals_report(manifest, out / "program" / manifest["program"]["name"], tmp_path)


@pytest.mark.parametrize("module_cls", [SmallOddKernels, SmallPools], ids=lambda c: c.__name__)
def test_compiler_requirements_match_the_cost_report_with_public_sparsity(module_cls, tmp_path, capsys):
    """--sparsity public: one product per non-zero weight in a run-time loop over the pattern (70 % of
    each convolution's weights zero, one output channel entirely)."""
    need_shared(COMPILER)
    out = build_small(module_cls, tmp_path, capsys, prune=0.7, extra=["--sparsity", "public"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert_compiler_count_equals_report(manifest, out / "program" / manifest["program"]["name"], tmp_path)


def test_public_sparsity_on_a_90_percent_sparse_resnet18_needs_under_30_percent_of_the_old_dense_products(tmp_path):
    """The issue's target, measured with the compiler: a 90 %-sparse ResNet-18 (CIFAR-10 topology, random
    weights, global magnitude pruning) with --sparsity public needs <= 30 % of the 889 M secret products the
    program made before on such a model (the issue's count, conv products alone)."""
    import sys

    import torch

    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.fixedpoint import FixedSpec, Protocol

    need_shared(COMPILER)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the benchmark's model maker
    from sparse_resnet18 import sparse_resnet18

    model, zero_fraction = sparse_resnet18(0.9, 128)
    assert zero_fraction >= 0.9
    path = tmp_path / "resnet18_sparse.pth"
    torch.save(model.state_dict(), path)
    manifest = build(BuildOptions(model=path, out=tmp_path / "out", fx=FixedSpec(protocol=Protocol(sparsity="public"))))
    triples, bits = compiler_requires(tmp_path / "out" / "program" / manifest["program"]["name"])
    assert (triples, bits) == (manifest["cost"]["totals"]["triples"], manifest["cost"]["totals"]["bits"])
    assert triples <= 0.3 * 889_000_000


# the protocol calls whose price and rounds are checked against the compiler
CALLS = [("LTZ", 12), ("LTZ", 16), ("LTZ", 20), ("LTZ", 22), ("LTZ", 24), ("LTZ", 28), ("LTZ", 32), ("LTZ", 36), ("LTZ", 41),
         ("LTZ", 43), ("LTZ", 64), ("LTZ", 82), ("Trunc", 82, 24), ("Trunc", 84, 26), ("Trunc", 41, 12), ("Trunc", 82, 12),
         ("Trunc", 43, 2), ("TruncPr", 82, 24), ("TruncPr", 41, 12)]


def openings(tmp_root, body: str) -> int:
    """Open instructions of one call, from the compiled program minus the same program without it: with
    -n (as FANNG's compile.sh and run compile) each is one network round trip."""
    def count(name, text):
        folder = Path(tmp_root) / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.mpc").write_text(MICRO.format(body=text))
        proc = subprocess.run([str(COMPILER), str(folder)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-1500:]
        return json.loads(proc.stdout.strip().splitlines()[-1])["key"]["startopen"]["n"]

    return count("open_" + str(abs(hash(body))), body) - count("open_base", "r = a")


@pytest.mark.parametrize("call", CALLS, ids=str)
def test_each_protocol_is_priced_as_the_compiler_counts_it(call, tmp_path):
    """Triples and random bits per element, and rounds (open instructions) per call, from the compiler."""
    from mpc_export.ops.protocol import Comparison, Truncation

    need_shared(COMPILER)
    if call[0] == "LTZ":
        step, body = Comparison("x", call[1], 1, 1), f"r = sint()\nAdvInteger.LTZ(r, a, {call[1]}, 40)"
    else:
        exact = call[0] == "Trunc"
        step, body = Truncation("x", call[1], call[2], exact, 1, 1), truncation_body(f"{call[1]},{call[2]},{'exact' if exact else 'p'}")
    assert step.price(40) == price(str(tmp_path / "micro"), body)
    assert step.rounds_per_call == openings(str(tmp_path / "opens"), body)


def test_a_product_instruction_is_one_round(tmp_path):
    from mpc_export.ops.protocol import Products

    need_shared(COMPILER)
    assert Products("x", 1, 1).rounds_per_call == openings(str(tmp_path / "opens"), "r = a * a")
    assert Products("x", 1, 9, instructions=9).rounds_per_call == openings(
        str(tmp_path / "opens9"), "r = a * a\n" + "\n".join("r = r + a * a" for _ in range(8)))
