"""Graph passes from the float IR to the fixed-point IR the program executes.

Each pass is a function ``(graph) -> int`` (number of rewrites); ``lower_for_mpc`` runs them in order
and returns a log of what ran. The BatchNorm folding formula lives only in ``fold_batchnorm``.
"""

from __future__ import annotations

import copy
import re

import numpy as np

from ..errors import UserError
from ..ir import Graph, Node


def _bypass(graph: Graph, node: Node) -> None:
    """Remove a single-input node, rewiring its consumers to its input."""
    (source,) = node.inputs
    graph.nodes.remove(node)
    for n in graph.nodes:
        n.inputs = [source if i == node.name else i for i in n.inputs]


def drop_identity(graph: Graph) -> int:
    nodes = [n for n in graph.nodes if n.op == "identity"]
    for node in nodes:
        _bypass(graph, node)
    return len(nodes)


def fold_batchnorm(gamma, beta, mean, var, eps):
    """new_gamma = gamma / sqrt(var + eps); new_beta = beta - mean * new_gamma (float64)."""
    denom = np.asarray(var, dtype=np.float64) + eps
    if np.any(denom <= 0):
        raise UserError(f"batch norm running_var + eps <= 0 at channel {int(np.argmax(denom <= 0))}")
    new_gamma = np.asarray(gamma, dtype=np.float64) / np.sqrt(denom)
    new_beta = np.asarray(beta, dtype=np.float64) - np.asarray(mean, dtype=np.float64) * new_gamma
    return new_gamma, new_beta


def bn_to_affine(graph: Graph) -> int:
    nodes = [n for n in graph.nodes if n.op == "batchnorm"]
    for node in nodes:
        p = node.params
        new_gamma, new_beta = fold_batchnorm(p["gamma"], p["beta"], p["mean"], p["var"], node.attrs["eps"])
        node.op, node.attrs = "affine", {}
        node.params = {"new_gamma": new_gamma, "new_beta": new_beta}
    return len(nodes)


def fold_affine_into_linear(graph: Graph) -> int:
    """A per-feature affine (a BatchNorm1d, folded) right after a linear layer, or right before one, folded
    into that layer's weights and bias, exactly in real arithmetic:
    after:  g (W x + b) + beta    = (g W) x + (g b + beta)      (g scales each output's row)
    before: W (g x + beta) + b    = (W g) x + (W beta + b)      (g scales each input's column)."""
    count = 0
    for affine in [n for n in graph.nodes if n.op == "affine"]:
        gamma, beta = affine.params["new_gamma"], affine.params["new_beta"]
        source = graph.node(affine.inputs[0])
        consumers = graph.consumers(affine.name)
        if source.op == "linear" and len(graph.consumers(source.name)) == 1 and len(gamma) == source.params["weight"].shape[0]:
            source.params["weight"] = gamma[:, None] * source.params["weight"]
            source.params["bias"] = gamma * source.params["bias"] + beta
            source.origin = source.origin + affine.origin
        elif (len(consumers) == 1 and consumers[0].op == "linear" and len(graph.node(affine.inputs[0]).shape) == 1
              and len(gamma) == consumers[0].params["weight"].shape[1]):
            linear = consumers[0]
            linear.params["bias"] = linear.params["weight"] @ beta + linear.params["bias"]
            linear.params["weight"] = linear.params["weight"] * gamma[None, :]
            linear.origin = affine.origin + linear.origin
        else:
            continue
        _bypass(graph, affine)
        count += 1
    return count


def _sole_consumer(graph: Graph, node: Node, op: str, **attrs) -> Node | None:
    consumers = graph.consumers(node.name)
    if len(consumers) != 1 or consumers[0].op != op:
        return None
    if any(consumers[0].attrs.get(k, v) != v for k, v in attrs.items()):
        return None
    return consumers[0]


def fuse_conv_blocks(graph: Graph) -> int:
    """conv2d [-> maxpool 2x2] [-> affine] [-> relu] [-> avgpool 2x2] => conv_block."""
    count = 0
    for conv in [n for n in graph.nodes if n.op == "conv2d"]:
        w = conv.params["weight"]
        stride = conv.attrs.get("stride", 1)
        kernel, padding = w.shape[2], conv.attrs.get("padding", 0)
        if w.shape[2] != w.shape[3] or kernel % 2 == 0 or kernel > 7 or stride not in (1, 2) or not 0 <= padding <= kernel // 2:
            raise UserError(f"{conv.name}: a {w.shape[2]}x{w.shape[3]} convolution with stride {stride} and padding {padding}: "
                            "only square odd kernels (1, 3, 5, 7) with padding 0 to k // 2 and stride 1 or 2 are supported")
        chain = [conv]
        pre = _sole_consumer(graph, chain[-1], "maxpool", kernel=2, stride=2)
        if pre is not None:
            chain.append(pre)
        affine = _sole_consumer(graph, chain[-1], "affine")
        if affine is not None:
            chain.append(affine)
        relu = _sole_consumer(graph, chain[-1], "relu")
        if relu is not None:
            chain.append(relu)
        post = _sole_consumer(graph, chain[-1], "avgpool", kernel=2, stride=2) if relu is not None else None
        if post is not None:
            chain.append(post)
        o = w.shape[0]
        params = {
            "weight": w,
            "bias": conv.params.get("bias", np.zeros(o)),
            "new_gamma": affine.params["new_gamma"] if affine else np.ones(o),
            "new_beta": affine.params["new_beta"] if affine else np.zeros(o),
        }
        attrs = {"stride": stride, "padding": padding, "pre_pool": pre is not None, "affine": affine is not None,
                 "relu": relu is not None, "post_pool": post is not None}
        count += 1
        block = Node(f"conv_layer_{count}", "conv_block", list(conv.inputs), attrs, params,
                     origin=[o_ for n in chain for o_ in n.origin])
        graph.replace(chain, block)
    return count


def fuse_shortcut(graph: Graph) -> int:
    """subsample (equal steps) [-> channel_pad] => shortcut_a (the option-A pattern of ONNX exports)."""
    count = 0
    for sub in [n for n in graph.nodes if n.op == "subsample"]:
        if sub not in graph.nodes:  # merged into the previous slice
            continue
        # two consecutive slices (H then W) become one subsample
        nxt = _sole_consumer(graph, sub, "subsample")
        if nxt is not None:
            sub.attrs = {"step_h": sub.attrs["step_h"] * nxt.attrs["step_h"], "step_w": sub.attrs["step_w"] * nxt.attrs["step_w"]}
            sub.origin = sub.origin + nxt.origin
            _bypass(graph, nxt)
        if sub.attrs["step_h"] != sub.attrs["step_w"]:
            raise UserError(f"{sub.name}: subsampling with different steps on H and W is not supported")
        pad = _sole_consumer(graph, sub, "channel_pad")
        attrs = {"stride": sub.attrs["step_h"], "pad_lo": pad.attrs["pad_lo"] if pad else 0, "pad_hi": pad.attrs["pad_hi"] if pad else 0}
        node = Node(sub.name, "shortcut_a", list(sub.inputs), attrs, origin=sub.origin + (pad.origin if pad else []))
        graph.replace([sub, pad] if pad else [sub], node)
        count += 1
    return count


def fuse_add_relu(graph: Graph) -> int:
    count = 0
    for add in [n for n in graph.nodes if n.op == "add"]:
        relu = _sole_consumer(graph, add, "relu")
        if relu is not None:
            add.attrs["relu"] = True
            add.origin = add.origin + relu.origin
            _bypass(graph, relu)
            count += 1
    return count


def global_pools(graph: Graph) -> int:
    """A pool whose window covers the whole map becomes a global pool (written as a dense vector)."""
    count = 0
    for node in list(graph.nodes):
        if node.op not in ("mean_pool", "avgpool", "maxpool"):
            continue
        c, h, w = graph.node(node.inputs[0]).shape
        covers = node.attrs.get("kernel", 2) == h == w
        if node.op == "mean_pool" or (node.op == "avgpool" and covers):
            node.op, count = "global_avgpool", count + 1
        elif node.op == "maxpool" and covers:
            node.op, count = "global_maxpool", count + 1
    return count


def fuse_dense(graph: Graph) -> int:
    count = 0
    for lin in [n for n in graph.nodes if n.op == "linear"]:
        relu = _sole_consumer(graph, lin, "relu")
        chain = [lin, relu] if relu else [lin]
        source = graph.node(lin.inputs[0])
        if source.op == "flatten":  # the program reads the source in C order: flatten is free
            _bypass(graph, source)
        count += 1
        node = Node(f"linear_layer_{count}", "dense", list(lin.inputs), {"relu": relu is not None},
                    {"weight": lin.params["weight"], "bias": lin.params["bias"]}, origin=[o for n in chain for o in n.origin])
        graph.replace(chain, node)
    return count


def assign_layouts(graph: Graph) -> int:
    """Decide once how each activation is stored in the program (read by codegen and by cost):
    zero-padded planes if any consumer reads planes, else a dense vector (also the output); a consumer
    that reads either ("any", e.g. dense) takes what its producer writes, dense when it can."""
    for node in graph.nodes:
        wanted = {c.spec.input_layout for c in graph.consumers(node.name)} or {"dense"}
        if wanted == {"any"}:  # consumers that read either: the producer's cheaper one (dense when it can)
            wanted = {"dense" if "dense" in node.spec.output_layouts else node.spec.output_layouts[0]}
        layout = "padded" if "padded" in wanted else "dense"
        if layout not in node.spec.output_layouts:
            raise UserError(f"{node.name} ({node.op}) cannot write the {layout} layout its consumers read")
        node.attrs["out_layout"] = layout
    return len(graph.nodes)


def name_nodes(graph: Graph) -> int:
    """Give every node a name the tool owns, unique by construction and a valid identifier in any
    language the program or a file system speaks: conv_layer_<i> and linear_layer_<i> (FANNG's names,
    numbered in layer order), <op>_<i> for the rest, "input" for the input; the graph a lowercase ASCII
    name. The model's own names stay in each node's ``origin`` (reported, escaped, never executed or used
    as a path). Returns the number of nodes renamed."""
    prefixes = {"conv_block": "conv_layer", "dense": "linear_layer"}
    counts: dict[str, int] = {}
    renamed: dict[str, str] = {}
    for node in graph.nodes:
        if node.op == "input":
            new = "input"
        else:
            prefix = prefixes.get(node.op, node.op)
            counts[prefix] = counts.get(prefix, 0) + 1
            new = f"{prefix}_{counts[prefix]}"
        renamed[node.name] = new
    for node in graph.nodes:
        node.name = renamed[node.name]
        node.inputs = [renamed[i] for i in node.inputs]
    graph.name = re.sub(r"[^a-z0-9]+", "_", graph.name.lower()).strip("_")[:40] or "model"
    return sum(1 for old, new in renamed.items() if old != new)


PIPELINE = [drop_identity, bn_to_affine, fold_affine_into_linear, fuse_shortcut, fuse_conv_blocks, fuse_add_relu, global_pools, fuse_dense]


def lower_for_mpc(graph: Graph) -> tuple[Graph, list[tuple[str, int]]]:
    """A copy of graph with only executable ops, and the log of passes (name, rewrites)."""
    graph = copy.deepcopy(graph)
    log = []
    for fn in PIPELINE:
        graph.infer_shapes()
        log.append((fn.__name__, fn(graph)))
    graph.infer_shapes()
    for node in graph.nodes:
        if not node.spec.executable:
            raise UserError(f"{node.name}: op {node.op!r} (from {', '.join(node.origin) or 'the model'}) cannot be executed by the generated program")
    log.append(("name_nodes", name_nodes(graph)))
    log.append(("assign_layouts", assign_layouts(graph)))
    return graph, log
