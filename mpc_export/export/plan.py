"""The deployment plan: every file, its channel and its place in the program's channel-open order.

Layout of the output directory (``DATA`` is e.g. ``PrunedResnetData``; paths in the IO answers are
relative to the runtime's ``Data/`` folder, so operators copy ``DATA`` there):

    DATA/all_parameters/{weights,bias,new_gamma,new_beta}/P0-<tensor>.txt      one per parameter tensor
    DATA/all_parameters/sparsity/P0-sparsity_pattern.txt                       --sparsity public: the pattern
    DATA/Inputs/Execution_<n>/P0-Conv_layer_1.input.txt                        input of execution n (CHW)
    DATA/Outputs/Execution_<n>/P0-<layer>.output.txt                           expected layer outputs
    program/<name>/<name>.mpc                                                  the MAMBA program
    io_answers.txt, io_answers.sh                                              "i <path>" per channel open
    manifest.json
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..ir import Graph
from .channels import KIND_FOLDERS, ChannelMap, check_covers, tensor_name


@dataclass
class ParamFile:
    tensor: str
    node: str
    param: str
    layout: str
    channel: int
    path: str  # relative to the output dir (and to the runtime's Data/)
    offset: int = 0  # element offset of this tensor within its file (packed channels)
    count: int = 0


@dataclass
class InputFile:
    execution: int
    channel: int
    path: str


@dataclass
class PatternFile:
    """The public integers the program reads at run time (``--sparsity public``): each node's
    ``public_pattern``, concatenated in graph order, in one file on one channel that every player reads
    (as public input, from its own copy). ``entries``: node name -> (first value index, values)."""

    channel: int
    path: str
    values: np.ndarray
    entries: dict[str, tuple[int, int]] = field(default_factory=dict)


def data_folder(graph: Graph) -> str:
    return "".join(part.capitalize() for part in graph.name.split("_")) + "Data"


def parameter_files(graph: Graph, cmap: ChannelMap) -> list[ParamFile]:
    """Parameter tensors in channel-open order: by kind (cmap.kinds), then by layer. With one channel
    per tensor each has its own file; with the packed rule a kind's tensors share one file/channel."""
    folder = data_folder(graph)
    found = []
    for node in graph.nodes:
        for param, layout in node.spec.params:
            found.append((param, node, tensor_name(node.name, param), layout))
    own_channels = check_covers(cmap, [f[2] for f in found])
    ordered = []
    for kind in cmap.kinds:
        offset = 0
        for param, node, name, layout in found:
            if param != kind:
                continue
            count = int(node.params[param].size)
            if own_channels:
                path = f"{folder}/all_parameters/{KIND_FOLDERS[kind]}/P0-{name}.txt"
                ordered.append(ParamFile(name, node.name, param, layout, cmap.parameters[name], path, 0, count))
            else:
                path = f"{folder}/all_parameters/{KIND_FOLDERS[kind]}/P0-all_{kind}.txt"
                ordered.append(ParamFile(name, node.name, param, layout, cmap.packed[kind], path, offset, count))
                offset += count
    return ordered


def pattern_file(graph: Graph, fx, cmap: ChannelMap, params: list[ParamFile]) -> PatternFile | None:
    """The pattern file when some node reads public integers at run time, else None. Its channel is the
    map's ``sparsity_pattern`` (100048 in the seed table), which no tensor may use."""
    parts, entries, first = [], {}, 0
    for node in graph.nodes:
        values = node.spec.public_pattern(node, fx)
        if values is not None:
            entries[node.name] = (first, int(values.size))
            parts.append(values)
            first += int(values.size)
    if not entries:
        return None
    channel = cmap.sparsity_pattern
    taken = {pf.channel: pf.tensor for pf in params}
    if channel in taken or cmap.input_range[0] <= channel <= cmap.input_range[1]:
        raise UserError(f"channel map: the sparsity pattern's channel {channel} is taken "
                        f"({taken.get(channel, 'an input channel')}); set [public] sparsity_pattern to a free channel")
    return PatternFile(channel, f"{data_folder(graph)}/all_parameters/sparsity/P0-sparsity_pattern.txt",
                       np.concatenate(parts), entries)


def files_of(params: list[ParamFile]) -> list[tuple[str, int, list[ParamFile]]]:
    """(path, channel, tensors in file order) per parameter file, in channel-open order."""
    grouped: dict[str, list[ParamFile]] = {}
    for pf in params:
        grouped.setdefault(pf.path, []).append(pf)
    return [(path, tensors[0].channel, tensors) for path, tensors in grouped.items()]


def input_file(graph: Graph, cmap: ChannelMap, execution: int) -> InputFile:
    path = f"{data_folder(graph)}/Inputs/Execution_{execution}/P0-Conv_layer_1.input.txt"
    return InputFile(execution, cmap.input_channel(execution), path)


def output_path(graph: Graph, execution: int, node_name: str) -> str:
    return f"{data_folder(graph)}/Outputs/Execution_{execution}/P0-{node_name}.output.txt"


def program_name(graph: Graph) -> str:
    return f"mpc_export_{graph.name}"
