"""The rendered program against the declared schedule, in seconds and without the runtime.

Each small model's program (every op and variant: strided, pooled before and after, without BN or
ReLU, residual add, global max and average pools, dense chains) is executed by a plaintext MAMBA
interpreter (tests/mamba_plaintext.py, written from the MAMBA semantics, not from mpc_export). The
protocol calls it makes (truncations by bit length and shift, comparisons by bit length, secret
products) must be exactly what the ops declared (the cost report is their sum); every protocol input
must be inside its declared range; and in exact mode every printed layer and logit must equal the
reference. A mutated program (a truncation shifted by one bit less, as a template edit would do) fails.
"""

import json
import re
from collections import Counter

import pytest

from runtime_rules import runtime_parse
from small_models import SmallAddFlat, SmallMLP, SmallOddKernels, SmallAvg, SmallPools, SmallResidual, SmallStrided, SmallStridedFlat, SmallVGG, build_small
from helpers import declared_counts, execute_program, printed_values, program_path

MODELS = [SmallAvg, SmallResidual, SmallStrided, SmallPools, SmallVGG, SmallStridedFlat, SmallAddFlat, SmallOddKernels, SmallMLP]


@pytest.mark.parametrize("convolution,weights,sparsity", [("winograd", "private", "private"), ("direct", "private", "private"),
                                                         ("winograd", "public", "private"), ("direct", "public", "private"),
                                                         ("winograd", "private", "public")])
@pytest.mark.parametrize("module_cls", MODELS, ids=lambda c: c.__name__)
def test_program_executes_the_declared_schedule_and_equals_the_reference(module_cls, convolution, weights, sparsity, tmp_path,
                                                                         capsys):
    """With --weights public the parameters are public values (cint): the program's secret products are
    only the ReLU and max selections, as declared; with --sparsity public (the convolutions 70 % pruned,
    one output channel entirely) the convolutions loop over the public pattern's non-zero weights. Either
    way the output stays equal to the reference."""
    out = build_small(module_cls, tmp_path, capsys, debug=True, prune=0.7 if sparsity == "public" else 0.0,
                      extra=["--convolution", convolution, "--weights", weights, "--sparsity", sparsity])
    manifest, machine = execute_program(out)
    executions = len(manifest["executions"])
    counts, products = declared_counts(manifest)
    assert machine.call_counts() == Counter({key: n * executions for key, n in counts.items()})
    assert machine.products == products * executions
    assert not machine.range_violations
    # exact truncation: every logit and every printed layer equals the reference bit for bit
    logits = printed_values(machine, "LOGIT")
    for e in manifest["executions"]:
        assert [logits[(str(e["index"]), str(j))] for j in range(len(e["logits"]))] == e["logits"]
    debug = printed_values(machine, "DEBUG")
    expected = {f["tensor"]: f for f in manifest["files"] if f["role"] == "expected_output" and f["execution"] == 0}
    checked = 0
    for layer in manifest["layers"][1:]:
        ident = re.sub(r"\W", "_", layer["name"]).upper()
        values = sorted((tuple(int(v) for v in key[2:]), value) for key, value in debug.items() if key[:2] == ("0", ident))
        written = runtime_parse((out / expected[layer["name"]]["path"]).read_text())
        assert [v for _, v in values] == written, layer["name"]
        checked += 1
    assert checked == len(manifest["layers"]) - 1


def test_probabilistic_build_declares_and_calls_truncpr_within_the_bound(tmp_path, capsys):
    out = build_small(SmallAvg, tmp_path, capsys, extra=["--truncation", "probabilistic"])
    manifest, machine = execute_program(out, seed=3)
    assert manifest["protocol"]["truncation"] == "probabilistic"
    counts, products = declared_counts(manifest)
    assert {key[0] for key in counts} == {"TruncPr", "LTZ"}
    assert machine.call_counts() == Counter({key: 2 * n for key, n in counts.items()})
    logits = printed_values(machine, "LOGIT")
    from mpc_export.pipeline.verify import VerifyOptions, verify

    bound = verify(VerifyOptions(directory=out, onnx=False))["layers"][-1]["bound_ulp"]
    assert bound > 0
    for e in manifest["executions"]:
        diff = max(abs(logits[(str(e["index"]), str(j))] - v) for j, v in enumerate(e["logits"]))
        assert diff <= bound


def test_a_shift_mutation_in_the_program_is_caught(tmp_path, capsys):
    """The reviewer's mutation: a truncation by one bit less than declared doubles every conv output."""
    out = build_small(SmallAvg, tmp_path, capsys)
    manifest = json.loads((out / "manifest.json").read_text())
    text = program_path(out, manifest).read_text()
    mutated = text.replace("value = truncate(value, truncation)",
                           "value = truncate(value, (truncation[0], truncation[1] - 1, truncation[2]))")
    assert mutated != text
    path = tmp_path / "mutated.mpc"
    path.write_text(mutated)
    _, machine = execute_program(out, program=path)
    counts, _ = declared_counts(manifest)
    assert machine.call_counts() != Counter({key: 2 * n for key, n in counts.items()})
    logits = printed_values(machine, "LOGIT")
    assert any(logits[("0", str(j))] != v for j, v in enumerate(manifest["executions"][0]["logits"]))
