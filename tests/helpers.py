"""Helpers several test modules share (one place, not imported from one test module by another): the
real MAMBA compiler's requirements and per-protocol prices, the plaintext execution of a build's program
and its printed values, the seed's channel open order, the hostile names, the leftover-player check."""

import ast
import functools
import json
import os
import resource
import subprocess
import time
from collections import Counter
from pathlib import Path

import onnx

from conftest import COMPILER, need_shared
from mamba_plaintext import run_program

MICRO = """from Compiler import AdvInteger
a = sint.get_private_input_from(0)
{body}
print_ln("%s", r.reveal())
"""


def compiler_requires(program_dir) -> tuple[int, int]:
    proc = subprocess.run([str(COMPILER), str(program_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    need = ast.literal_eval(summary["requires"]) if summary.get("requires") else {}
    return need.get(("modp", "triple"), 0), need.get(("modp", "bit"), 0)


@functools.lru_cache(maxsize=None)
def price(tmp_root, body: str) -> tuple[int, int]:
    """(triples, bits) of one call, from a compiled program minus the same program without it."""

    def compile_body(name, text):
        folder = Path(tmp_root) / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.mpc").write_text(MICRO.format(body=text))
        return compiler_requires(folder)

    base = compile_body("base", "r = a")
    name = "p" + str(abs(hash(body)))
    got = compile_body(name, body)
    return got[0] - base[0], got[1] - base[1]


def truncation_body(shape: str) -> str:
    k, m, mode = shape.split(",")
    if mode == "exact":
        return f"r = sint()\nAdvInteger.Trunc(r, a, {k}, {m}, 40, True)"
    return f"r = AdvInteger.TruncPr(a, {k}, {m}, 40)"


def assert_compiler_count_equals_report(manifest, program, tmp_path):
    """The compiler's "Program requires" triples and bits equal the report's totals, and equal the sum of
    every declared protocol call priced by the compiler on its own; the report is per execution and the
    program runs each of the build's executions, after its runtime check (once, before any input; its own
    count against the compiler's is in tests/test_runtime_check.py)."""
    triples, bits = compiler_requires(program)
    check = next(row for row in manifest["cost"]["layers"] if row["node"] == "runtime_check")
    triples, bits = triples - check["triples"], bits - check["bits"]
    runs = len(manifest["executions"])
    assert triples % runs == 0 and bits % runs == 0
    triples, bits = triples // runs, bits // runs
    totals = manifest["cost"]["totals"]
    assert (triples, bits) == (totals["triples"] - check["triples"], totals["bits"] - check["bits"])  # the report's totals
    want_triples, want_bits = totals["multiplications"], 0
    root = str(tmp_path / "micro")
    for bit_length, n in totals["comparisons_by_bits"].items():
        t, b = price(root, f"r = sint()\nAdvInteger.LTZ(r, a, {bit_length}, 40)")
        want_triples += n * t
        want_bits += n * b
    for shape, n in totals["truncations_by_shape"].items():
        t, b = price(root, truncation_body(shape))
        want_triples += n * t
        want_bits += n * b
    assert (triples, bits) == (want_triples, want_bits)


def compile_program(program_dir, keep_dir):
    need_shared(COMPILER)
    env = dict(os.environ, MAMBA_COMPILE_OUT=str(keep_dir))
    timer = "/usr/bin/time"
    peak_file = keep_dir.parent / f"{keep_dir.name}.maxrss"
    command = [str(COMPILER), str(program_dir)]
    if os.path.exists(timer):  # peak memory of the compiler itself (this process's other children aside)
        command = [timer, "-f", "%M", "-o", str(peak_file)] + command
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    if peak_file.exists():
        peak_kb = int(peak_file.read_text().split()[-1])
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary, wall, peak_kb


def program_path(out, manifest):
    name = manifest["program"]["name"]
    return out / "program" / name / f"{name}.mpc"


def execute_program(out, program=None, seed=0):
    manifest = json.loads((out / "manifest.json").read_text())
    program = program or program_path(out, manifest)
    machine = run_program(program, out, out / "io_answers.txt",  # answers are relative to Data/, the build root here
                          manifest["fixed_point"]["reading_precision"], seed)
    return manifest, machine


def declared_counts(manifest) -> tuple[Counter, int]:
    """What the ops declared, per execution, as the interpreter counts it: elements per (protocol, bit
    length, shift), and secret products."""
    totals = manifest["cost"]["totals"]
    counts = Counter()
    for shape, n in totals["truncations_by_shape"].items():
        k, m, mode = shape.split(",")
        counts[("Trunc" if mode == "exact" else "TruncPr", int(k), int(m))] += n
    for k, n in totals["comparisons_by_bits"].items():
        counts[("LTZ", int(k), None)] += n
    return counts, totals["multiplications"]


def printed_values(machine, kind):
    """LOGIT/DEBUG lines as {(execution, label..., index...): value}."""
    found = {}
    for line in machine.printed:
        parts = line.split()
        if parts[0] == kind:
            found[tuple(parts[1:-1])] = int(parts[-1])
    return found


FANNG_OPEN_ORDER = [90050] + list(range(100040, 100048)) + list(range(100020, 100028)) + list(range(100034, 100040)) + list(range(100028, 100034))


def players_left(root_hint="mpc-export-run-"):
    proc = subprocess.run(["pgrep", "-f", root_hint], capture_output=True, text=True)
    return [p for p in proc.stdout.split() if p]


HOSTILE = ["a.b", "a_b", "a-b", "\nprint_ln('pwned')\n", "../../escape", "0lead", "x\"'\\", "FANNG\r\nimport os",
           "conv_layer_1", "linear_layer_1", "input", "INPUT_STAGING", "é", "a b"]


def rename_everything(model: onnx.ModelProto, wanted: list[str]) -> onnx.ModelProto:
    """Every tensor (input, output, initializer, intermediate) and node renamed, unique (ONNX needs it)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    tensors = []
    for name in [i.name for i in graph.input] + [t.name for t in graph.initializer] + [o for n in graph.node for o in n.output]:
        if name and name not in tensors:
            tensors.append(name)
    mapping, used = {}, set()
    for index, old in enumerate(tensors):
        new = wanted[index % len(wanted)]
        while new in used:
            new = new + "_"
        used.add(new)
        mapping[old] = new
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        value.name = mapping.get(value.name, value.name)
    for init in graph.initializer:
        init.name = mapping[init.name]
    node_names = set()
    for index, node in enumerate(graph.node):
        name = wanted[(index + 7) % len(wanted)]
        while name in node_names:
            name = name + "-"
        node_names.add(name)
        node.name = name
        node.input[:] = [mapping.get(i, i) for i in node.input]
        node.output[:] = [mapping.get(o, o) for o in node.output]
    return model
