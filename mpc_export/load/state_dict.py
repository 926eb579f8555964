"""State_dict front end: recognise a known architecture from its keys and shapes, build the IR.

Known: the seed pruned-ResNet (``network.N.*`` of one nn.Sequential, see the project README). Widths
are read from the weights, so a pruned variant with other channel counts loads too.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import UserError
from ..ir import Graph, Node

PRUNED_RESNET_CONVS = (0, 4, 8, 12, 16, 20)
PRUNED_RESNET_POOL_AFTER = (4, 12, 20)  # convs followed by AvgPool2d(2, 2)
PRUNED_RESNET_LINEARS = (25, 28)
BN_EPS = 1e-5


def _need(state: dict, key: str, ndim: int) -> np.ndarray:
    if key not in state:
        raise UserError(f"state_dict lacks {key!r}")
    value = state[key]
    if value.ndim != ndim:
        raise UserError(f"state_dict entry {key!r} has shape {tuple(value.shape)}, expected {ndim} dimensions")
    return value


def _is_pruned_resnet(state: dict) -> bool:
    return all(f"network.{i}.weight" in state for i in PRUNED_RESNET_CONVS + PRUNED_RESNET_LINEARS)


def _pruned_resnet(state: dict, name: str) -> Graph:
    expected = {f"network.{i}.{p}" for i in PRUNED_RESNET_CONVS for p in ("weight", "bias")}
    expected |= {f"network.{i + 1}.{p}" for i in PRUNED_RESNET_CONVS for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    expected |= {f"network.{i}.{p}" for i in PRUNED_RESNET_LINEARS for p in ("weight", "bias")}
    unexpected = sorted(set(state) - expected)
    if unexpected:
        raise UserError(f"state_dict looks like the pruned-ResNet but has unexpected keys: {', '.join(unexpected[:5])}")
    nodes = [Node("input", "input", [])]
    prev = "input"
    channels = 3
    for index, conv in enumerate(PRUNED_RESNET_CONVS, start=1):
        weight = _need(state, f"network.{conv}.weight", 4)
        o, i, kh, kw = weight.shape
        if (i, kh, kw) != (channels, 3, 3):
            raise UserError(f"network.{conv}.weight has shape {tuple(weight.shape)}, expected ({o}, {channels}, 3, 3)")
        bias = _need(state, f"network.{conv}.bias", 1)
        bn = {p: _need(state, f"network.{conv + 1}.{p}", 1) for p in ("weight", "bias", "running_mean", "running_var")}
        for key, value in [(f"network.{conv}.bias", bias)] + [(f"network.{conv + 1}.{p}", v) for p, v in bn.items()]:
            if value.shape != (o,):
                raise UserError(f"{key} has shape {tuple(value.shape)}, expected ({o},)")
        conv_name, bn_name = f"conv{index}", f"bn{index}"
        nodes.append(Node(conv_name, "conv2d", [prev], {"stride": 1, "padding": 1}, {"weight": weight, "bias": bias}, origin=[f"network.{conv}"]))
        nodes.append(
            Node(bn_name, "batchnorm", [conv_name], {"eps": BN_EPS},
                 {"gamma": bn["weight"], "beta": bn["bias"], "mean": bn["running_mean"], "var": bn["running_var"]},
                 origin=[f"network.{conv + 1}"])
        )
        nodes.append(Node(f"relu{index}", "relu", [bn_name], origin=[f"network.{conv + 2}"]))
        prev = f"relu{index}"
        if conv in PRUNED_RESNET_POOL_AFTER:
            nodes.append(Node(f"pool{index}", "avgpool", [prev], {"kernel": 2, "stride": 2}, origin=[f"network.{conv + 3}"]))
            prev = f"pool{index}"
        else:
            nodes.append(Node(f"dropout{index}", "identity", [prev], origin=[f"network.{conv + 3}"]))
            prev = f"dropout{index}"
        channels = o
    nodes.append(Node("flatten", "flatten", [prev], origin=["network.24"]))
    prev = "flatten"
    for index, lin in enumerate(PRUNED_RESNET_LINEARS, start=1):
        weight = _need(state, f"network.{lin}.weight", 2)
        bias = _need(state, f"network.{lin}.bias", 1)
        if bias.shape != (weight.shape[0],):
            raise UserError(f"network.{lin}.bias has shape {tuple(bias.shape)}, expected ({weight.shape[0]},)")
        nodes.append(Node(f"fc{index}", "linear", [prev], {}, {"weight": weight, "bias": bias}, origin=[f"network.{lin}"]))
        prev = f"fc{index}"
        if index == 1:
            nodes.append(Node("dropout_fc", "identity", [prev], origin=["network.26"]))
            nodes.append(Node("relu_fc", "relu", ["dropout_fc"], origin=["network.27"]))
            prev = "relu_fc"
    return Graph(nodes, (3, 32, 32), name="pruned_resnet", description=f"pruned-ResNet (7 layers) from {name}")


ARCHITECTURES = [(_is_pruned_resnet, _pruned_resnet)]


def graph_from_state_dict(state: dict, name: str) -> Graph:
    for matches, build in ARCHITECTURES:
        if matches(state):
            return build(state, name)
    sample = ", ".join(list(state)[:4])
    raise UserError(f"unknown architecture: state_dict keys ({sample}, ...) match no known model (pruned-ResNet)")
