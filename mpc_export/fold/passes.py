"""Graph passes from the float IR to the fixed-point IR the program executes.

Each pass is a function ``(graph) -> int`` (number of rewrites); ``lower_for_mpc`` runs them in order
and returns a log of what ran. The BatchNorm folding formula lives only in ``bn_to_affine``.
"""

from __future__ import annotations

import copy

import numpy as np

from ..errors import UserError
from ..ir import Graph, Node


def drop_identity(graph: Graph) -> int:
    count = 0
    for node in [n for n in graph.nodes if n.op == "identity"]:
        (source,) = node.inputs
        graph.nodes.remove(node)
        for n in graph.nodes:
            n.inputs = [source if i == node.name else i for i in n.inputs]
        count += 1
    return count


def fold_batchnorm(gamma, beta, mean, var, eps):
    """new_gamma = gamma / sqrt(var + eps); new_beta = beta - mean * new_gamma (float64)."""
    denom = np.asarray(var, dtype=np.float64) + eps
    if np.any(denom <= 0):
        raise UserError(f"batch norm running_var + eps <= 0 at channel {int(np.argmax(denom <= 0))}")
    new_gamma = np.asarray(gamma, dtype=np.float64) / np.sqrt(denom)
    new_beta = np.asarray(beta, dtype=np.float64) - np.asarray(mean, dtype=np.float64) * new_gamma
    return new_gamma, new_beta


def bn_to_affine(graph: Graph) -> int:
    count = 0
    for node in [n for n in graph.nodes if n.op == "batchnorm"]:
        p = node.params
        new_gamma, new_beta = fold_batchnorm(p["gamma"], p["beta"], p["mean"], p["var"], node.attrs["eps"])
        node.op = "affine"
        node.params = {"new_gamma": new_gamma, "new_beta": new_beta}
        node.attrs = {}
        count += 1
    return count


def _chain(graph: Graph, start: Node, ops: list[str]) -> list[Node] | None:
    """Nodes start -> ... with the given op kinds, each the sole consumer of the previous."""
    chain = [start]
    for op in ops:
        consumers = graph.consumers(chain[-1].name)
        if len(consumers) != 1 or consumers[0].op != op:
            return None
        chain.append(consumers[0])
    return chain


def fuse_conv_blocks(graph: Graph) -> int:
    count = 0
    for conv in [n for n in graph.nodes if n.op == "conv2d"]:
        chain = _chain(graph, conv, ["affine", "relu"])
        if chain is None:
            raise UserError(f"{conv.name}: only conv -> batchnorm -> relu blocks are supported by the program generator")
        w = conv.params["weight"]
        if w.shape[2:] != (3, 3) or conv.attrs.get("stride", 1) != 1 or conv.attrs.get("padding", 0) != 1:
            raise UserError(f"{conv.name}: only 3x3 convolutions with stride 1 and padding 1 are supported")
        pooled = _chain(graph, chain[-1], ["avgpool"])
        if pooled:
            chain.append(pooled[-1])
        affine = chain[1]
        block = Node(
            conv.name.replace("conv", "conv_layer_"),
            "conv_block",
            list(conv.inputs),
            {"pool": pooled is not None},
            {"weight": conv.params["weight"], "bias": conv.params["bias"],
             "new_gamma": affine.params["new_gamma"], "new_beta": affine.params["new_beta"]},
            origin=[o for n in chain for o in n.origin],
        )
        graph.replace(chain, block)
        count += 1
    return count


def fuse_dense(graph: Graph) -> int:
    count = 0
    index = 0
    for lin in [n for n in graph.nodes if n.op == "linear"]:
        index += 1
        relu = _chain(graph, lin, ["relu"])
        chain = relu if relu else [lin]
        inputs = list(lin.inputs)
        source = graph.node(inputs[0])
        if source.op == "flatten":  # the program reads a CHW buffer in C order: flatten is free
            graph.nodes.remove(source)
            inputs = list(source.inputs)
            for n in graph.nodes:
                n.inputs = [inputs[0] if i == source.name else i for i in n.inputs]
        node = Node(f"linear_layer_{index}", "dense", inputs, {"relu": relu is not None},
                    {"weight": lin.params["weight"], "bias": lin.params["bias"]}, origin=[o for n in chain for o in n.origin])
        graph.replace(chain, node)
        count += 1
    return count


PIPELINE = [drop_identity, bn_to_affine, fuse_conv_blocks, fuse_dense]


def lower_for_mpc(graph: Graph) -> tuple[Graph, list[tuple[str, int]]]:
    """A copy of graph with only executable ops, and the log of passes (name, rewrites)."""
    graph = copy.deepcopy(graph)
    log = []
    for fn in PIPELINE:
        log.append((fn.__name__, fn(graph)))
    graph.infer_shapes()
    for node in graph.nodes:
        if not node.spec.executable:
            raise UserError(f"{node.name}: op {node.op!r} cannot be executed by the generated program yet")
    return graph, log
