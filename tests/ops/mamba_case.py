"""A conformance case as a MAMBA program: the case's node behind an input node, rendered with --debug as
build renders it, and executed by the plaintext MAMBA interpreter (tests/mamba_plaintext.py, written from
the MAMBA semantics, not from mpc_export). Gives the node's printed output and the protocol calls made."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

NODE = "case_node"


def case_graph(case, fx):
    """(graph, node): an input node x of the case's first input shape (a vector (N,) as (N, 1, 1): the
    program's input is a CHW map) and the case's node, reading x for every input (an add adds x to x).
    Not for an input case: the input node's snippet runs in front of every other case."""
    from mpc_export.fixedpoint import encode
    from mpc_export.ir import Graph, Node

    shape = tuple(case.in_shapes[0]) if len(case.in_shapes[0]) == 3 else (case.in_shapes[0][0], 1, 1)
    params = {k: np.asarray(v, dtype=np.float64) for k, v in case.params.items()}
    nodes = [Node("x", "input", []), Node(NODE, case.op, ["x"] * len(case.in_shapes), dict(case.attrs), params)]
    graph = Graph(nodes, shape, name="conformance")
    graph.infer_shapes()
    # how the program stores each activation, as the build's assign_layouts decides it; the node writes a
    # dense vector where it can (it is the output), else zero-padded planes
    spec, written = graph.node(NODE).spec, graph.nodes[0].spec.output_layouts
    wanted = ("dense" if "dense" in written else written[0]) if spec.input_layout == "any" else spec.input_layout
    graph.nodes[0].attrs["out_layout"] = wanted
    graph.node(NODE).attrs["out_layout"] = "dense" if "dense" in spec.output_layouts else spec.output_layouts[0]
    for node in graph.nodes:
        node.qparams = {k: encode(v, fx.frac_bits) for k, v in node.params.items()}
    return graph, graph.node(NODE)


def run_case_program(case, fx, x: np.ndarray, root: Path):
    """Render the case's program for the one sample x (integers at scale 2^F, the input node's shape),
    write it and its data files under root, and execute it. Returns (the node's printed output in its
    C-order, the interpreter's machine, the node with its quantized parameters)."""
    from mpc_export.backends.mamba import program_products
    from mpc_export.export.channels import load_channel_map
    from mpc_export.export.plan import input_file, parameter_files, pattern_file
    from mpc_export.export.products import data_products
    from mpc_export.export.writer import write_text
    from mpc_export.reference.run import run_fixed

    from mamba_plaintext import run_program

    graph, node = case_graph(case, fx)
    cmap = load_channel_map(None)
    params = parameter_files(graph, cmap)
    pattern = pattern_file(graph, fx, cmap, params)
    inputs = [input_file(graph, cmap, 0)]
    x_int = x.reshape(1, *graph.input_shape)
    outputs = run_fixed(graph, fx, x_int)
    products = (data_products(graph, fx, "decimal", params, inputs, x_int, outputs, ["case"], pattern)
                + program_products(graph, fx, params, inputs, debug=True, pattern=pattern))
    for product in products:
        write_text(root, product.path, product.text)
    program = next(root / p.path for p in products if p.entry.get("role") == "program")
    machine = run_program(program, root, root / "io_answers.txt", fx.reading_precision)
    printed = {}
    for line in machine.printed:
        parts = line.split()
        if parts[:3] == ["DEBUG", "0", NODE.upper()]:
            printed[tuple(int(v) for v in parts[3:-1])] = int(parts[-1])
    return [printed[key] for key in sorted(printed)], machine, node


def declared_calls(schedule) -> tuple[Counter, int]:
    """The node's declared steps as the interpreter counts them: elements per (protocol, bit length,
    shift) and secret products (read from the schedule's steps here, not from the package's cost sum)."""
    from mpc_export.ops.protocol import Comparison, Products, Truncation

    counts, products = Counter(), 0
    for step in schedule.steps:
        n = step.calls * step.elements
        if isinstance(step, Truncation):
            counts[("Trunc" if step.exact else "TruncPr", step.bit_length, step.shift)] += n
        elif isinstance(step, Comparison):
            counts[("LTZ", step.bit_length, None)] += n
        elif isinstance(step, Products):
            products += n
    return +counts, products
