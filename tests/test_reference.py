"""The fast reference equals an independent slow implementation of the documented schedule, and its
exact integer linear algebra equals Python-int arithmetic even where float64 alone would round."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import slow_reference
from conftest import SEED_MODEL, SHARED
from mpc_export.fold import lower_for_mpc
from mpc_export.load import load_model
from mpc_export.fixedpoint import FixedSpec, encode
from mpc_export.quantize.graph import quantize_graph
from mpc_export.ops import _exact as exact
from mpc_export.reference.run import run_fixed


def seed_graph(fx):
    graph, _ = lower_for_mpc(load_model(SEED_MODEL))
    quantize_graph(graph, fx)
    return graph


def test_reference_equals_slow_python_int_schedule_on_the_seed_model():
    import torch

    fx = FixedSpec()
    graph = seed_graph(fx)
    image_path = SHARED / "fixtures" / "image_1.pt"
    if image_path.exists():
        image = torch.load(image_path, weights_only=True).double().numpy()
    else:
        image = np.random.default_rng(0).random((3, 32, 32))
    x = encode(image, fx.frac_bits)
    layers = []
    for node in graph.nodes[1:]:
        kind = "conv" if node.op == "conv_block" else "dense"
        layers.append({"kind": kind, "q": node.qparams, "pool": node.attrs.get("post_pool"), "relu": node.attrs.get("relu")})
    slow = slow_reference.run(layers, x, fx.frac_bits)
    fast = run_fixed(graph, fx, x[None])
    for node, want in zip(graph.nodes[1:], slow):
        got = fast[node.name][0]
        assert got.shape == want.shape, node.name
        assert [int(v) for v in got.ravel()] == [int(v) for v in want.ravel()], node.name


@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.int64, (2, 2, 5, 5), elements=st.integers(-(2**40), 2**40)),
    w=arrays(np.int64, (3, 2, 3, 3), elements=st.integers(-(2**24), 2**24)),
)
def test_exact_conv_beyond_float64_precision(x, w):
    got = exact.conv2d(x, w, padding=1)
    want = np.stack([slow_reference.conv3x3_pad1(xi.astype(object), w.astype(object)) for xi in x])
    assert [int(v) for v in np.ravel(got)] == [int(v) for v in np.ravel(want)]


@settings(max_examples=60, deadline=None)
@given(
    x=arrays(np.int64, (3, 7), elements=st.integers(-(2**45), 2**45)),
    w=arrays(np.int64, (4, 7), elements=st.integers(-(2**30), 2**30)),
)
def test_exact_linear_beyond_float64_precision(x, w):
    got = exact.linear(x, w)
    want = np.dot(x.astype(object), w.T.astype(object))
    assert [int(v) for v in np.ravel(got)] == [int(v) for v in np.ravel(want)]


def test_reference_runs_in_threads_give_what_each_gives_alone():
    """Two threads running the reference at once (concurrent builds in one process) each get the result
    the same call gives alone: no work buffer is shared between threads."""
    import threading

    fx = FixedSpec()
    graph = seed_graph(fx)
    rng = np.random.default_rng(7)
    batches = [encode(rng.random((8, 3, 32, 32)), fx.frac_bits) for _ in range(2)]
    alone = [run_fixed(graph, fx, batch)[graph.nodes[-1].name].copy() for batch in batches]
    start = threading.Barrier(2)
    got: dict[int, list] = {0: [], 1: []}

    def work(index):
        start.wait()
        for _ in range(6):
            got[index].append(run_fixed(graph, fx, batches[index])[graph.nodes[-1].name].copy())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(2):
        assert len(got[index]) == 6
        for logits in got[index]:
            assert np.array_equal(logits, alone[index])
