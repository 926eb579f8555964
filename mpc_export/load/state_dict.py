"""State_dict front end: recognise a known architecture from its keys and shapes, build the IR.

Known: the seed pruned-ResNet (``network.N.*`` of one nn.Sequential, see docs/schedule.md), the CIFAR
ResNets (ResNet-20 option A, ResNet-18 with projection shortcuts) and custResNet. Widths are read from
the weights, so a pruned variant with other channel counts loads too; a checkpoint saved while
torch.nn.utils.prune is attached (``weight_orig`` and ``weight_mask``) loads as ``weight_orig * weight_mask``.
"""

from __future__ import annotations


import numpy as np

from ..errors import UserError
from ..ir import Graph, Node

PRUNED_RESNET_CONVS = (0, 4, 8, 12, 16, 20)
PRUNED_RESNET_POOL_AFTER = (4, 12, 20)  # convs followed by AvgPool2d(2, 2)
PRUNED_RESNET_LINEARS = (25, 28)
BN_EPS = 1e-5


PRUNE_ORIGINAL, PRUNE_MASK = "_orig", "_mask"  # torch.nn.utils.prune's suffixes while a pruning is attached


def _pruned_names(state: dict) -> list[str]:
    """The tensor names (e.g. "layer1.0.conv1.weight") a pruning is attached to: each has <name>_orig and
    <name>_mask, and no plain <name>; a half of the pair alone, or the plain name beside them, refused."""
    originals = {key[: -len(PRUNE_ORIGINAL)] for key in state if key.endswith(PRUNE_ORIGINAL)}
    masks = {key[: -len(PRUNE_MASK)] for key in state if key.endswith(PRUNE_MASK)}
    without_mask, without_original = sorted(originals - masks), sorted(masks - originals)
    both = sorted(name for name in originals if name in state)
    if without_mask:
        raise UserError(f"state_dict has {without_mask[0] + PRUNE_ORIGINAL!r} but no pruning mask {without_mask[0] + PRUNE_MASK!r}; "
                        "save it with its mask, or after torch.nn.utils.prune.remove")
    if without_original:
        raise UserError(f"state_dict has the pruning mask {without_original[0] + PRUNE_MASK!r} but no {without_original[0] + PRUNE_ORIGINAL!r}")
    if both:
        raise UserError(f"state_dict has both {both[0]!r} and the pruning pair {both[0] + PRUNE_ORIGINAL!r}/{both[0] + PRUNE_MASK!r}; "
                        "which one holds the weights is ambiguous")
    return sorted(originals)


def _masked(name: str, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``original`` where ``mask`` is 1 and an exact 0 where it is 0: what prune.remove keeps, same dtype."""
    original, mask = np.asarray(original), np.asarray(mask)
    if mask.shape != original.shape:
        raise UserError(f"pruning mask {name + PRUNE_MASK!r} has shape {tuple(mask.shape)}, but "
                        f"{name + PRUNE_ORIGINAL!r} has shape {tuple(original.shape)}")
    not_binary = ~((mask == 0) | (mask == 1))
    if np.any(not_binary):
        example = mask[not_binary].flat[0]
        raise UserError(f"pruning mask {name + PRUNE_MASK!r} holds {int(not_binary.sum()):,} value(s) other than 0 and 1 "
                        f"(e.g. {example}); a torch.nn.utils.prune mask is 0/1")
    return np.where(mask == 1, original, np.zeros((), original.dtype))


def apply_prune_masks(state: dict) -> dict:
    """A state_dict saved while torch.nn.utils.prune was attached holds ``<name>_orig`` (the weights before
    pruning) and ``<name>_mask`` (0/1, same shape) where a plain one holds ``<name>``. Returns the plain
    state_dict (numpy arrays, in the same order): ``<name>`` = ``<name>_orig`` * ``<name>_mask`` with
    the pruned entries exact zeros. A state_dict without pruning pairs is returned unchanged."""
    names = _pruned_names(state)
    if not names:
        return state
    pruned = set(names)
    plain = {}
    for key, value in state.items():
        if key.endswith(PRUNE_ORIGINAL) and key[: -len(PRUNE_ORIGINAL)] in pruned:
            name = key[: -len(PRUNE_ORIGINAL)]
            plain[name] = _masked(name, value, state[name + PRUNE_MASK])
        elif not (key.endswith(PRUNE_MASK) and key[: -len(PRUNE_MASK)] in pruned):
            plain[key] = value
    return plain


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
    return Graph(nodes, (3, 32, 32), name="pruned_resnet", description=f"pruned-ResNet from {name}")


class _Builder:
    """Appends IR nodes in order; each helper returns the new node's name."""

    def __init__(self, state: dict):
        self.state = state
        self.nodes = [Node("input", "input", [])]

    def add(self, node: Node) -> str:
        self.nodes.append(node)
        return node.name

    def conv(self, prefix: str, source: str, stride: int = 1) -> str:
        weight = _need(self.state, f"{prefix}.weight", 4)
        o, _, kh, kw = weight.shape
        bias = self.state.get(f"{prefix}.bias", np.zeros(o))
        return self.add(Node(prefix, "conv2d", [source], {"stride": stride, "padding": kh // 2}, {"weight": weight, "bias": bias}, origin=[prefix]))

    def bn(self, prefix: str, source: str) -> str:
        params = {p: _need(self.state, f"{prefix}.{k}", 1) for p, k in
                  (("gamma", "weight"), ("beta", "bias"), ("mean", "running_mean"), ("var", "running_var"))}
        return self.add(Node(prefix, "batchnorm", [source], {"eps": BN_EPS}, params, origin=[prefix]))

    def simple(self, name: str, op: str, sources: list[str], **attrs) -> str:
        return self.add(Node(name, op, sources, attrs, origin=[name]))

    def linear(self, prefix: str, source: str) -> str:
        params = {"weight": _need(self.state, f"{prefix}.weight", 2), "bias": _need(self.state, f"{prefix}.bias", 1)}
        return self.add(Node(prefix, "linear", [source], {}, params, origin=[prefix]))

    def check_keys_used(self, name: str) -> None:
        used = set()
        for n in self.nodes:
            for o in n.origin:
                used |= {k for k in self.state if k.startswith(o + ".")}
        extra = sorted(k for k in set(self.state) - used if not k.endswith("num_batches_tracked"))
        if extra:
            raise UserError(f"state_dict looks like {name} but has unexpected keys: {', '.join(extra[:4])}")


def _is_resnet_a(state: dict) -> bool:
    """CIFAR ResNets (ResNet-20 option A; ResNet-18 with 1x1 projection shortcuts)."""
    return "conv1.weight" in state and "layer1.0.conv1.weight" in state and "linear.weight" in state


def _resnet_a(state: dict, name: str) -> Graph:
    from .torch_models import resnet_a_blocks

    b = _Builder(state)
    x = b.simple("relu", "relu", [b.bn("bn1", b.conv("conv1", "input"))])
    channels = int(state["conv1.weight"].shape[0])
    stem, blocks = resnet_a_blocks(state)
    for stage, widths in enumerate(blocks, start=1):
        for index, (mid, out) in enumerate(widths):
            p = f"layer{stage}.{index}"
            stride = 2 if stage > 1 and index == 0 else 1
            if int(state[f"{p}.conv1.weight"].shape[1]) != channels:
                raise UserError(f"{p}.conv1.weight expects {state[f'{p}.conv1.weight'].shape[1]} input channels, the block gets {channels}")
            y = b.simple(f"{p}.relu1", "relu", [b.bn(f"{p}.bn1", b.conv(f"{p}.conv1", x, stride))])
            y = b.bn(f"{p}.bn2", b.conv(f"{p}.conv2", y))
            if f"{p}.shortcut.0.weight" in state:  # projection shortcut: 1x1 conv + BN
                shortcut = b.bn(f"{p}.shortcut.1", b.conv(f"{p}.shortcut.0", x, stride))
            elif stride != 1 or channels != out:
                if out != channels + 2 * (out // 4):
                    raise UserError(f"{p}: an option-A shortcut from {channels} to {out} channels is not planes/4 padding")
                shortcut = b.simple(f"{p}.shortcut", "shortcut_a", [x], stride=stride, pad_lo=out // 4, pad_hi=out // 4)
            else:
                shortcut = x
            x = b.simple(f"{p}.relu2", "relu", [b.simple(f"{p}.add", "add", [y, shortcut])])
            channels = out
    x = b.simple("avgpool", "mean_pool", [x])
    x = b.linear("linear", b.simple("flatten", "flatten", [x]))
    b.check_keys_used("ResNet-20")
    depth = 2 + 2 * sum(len(w) for w in blocks)
    projection = any(".shortcut.0.weight" in k for k in state)
    return Graph(b.nodes, (3, 32, 32), name=f"resnet{depth}",
                 description=f"ResNet-{depth} ({'projection' if projection else 'option A'} shortcuts) from {name}",
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _is_custresnet(state: dict) -> bool:
    return "prep.conv.weight" in state and "layer1.conv_pool.conv.weight" in state and "fc.weight" in state


def _custresnet(state: dict, name: str) -> Graph:
    b = _Builder(state)

    def conv_layer(prefix: str, source: str, pool: bool) -> str:
        y = b.conv(f"{prefix}.conv", source)
        if pool:
            y = b.simple(f"{prefix}.pool", "maxpool", [y], kernel=2, stride=2)
        return b.simple(f"{prefix}.relu", "relu", [b.bn(f"{prefix}.bn", y)])

    x = conv_layer("prep", "input", False)
    for i in (1, 2, 3):
        x = conv_layer(f"layer{i}.conv_pool", x, True)
        if f"layer{i}.residual.0.conv.weight" in state:
            r = conv_layer(f"layer{i}.residual.1", conv_layer(f"layer{i}.residual.0", x, False), False)
            x = b.simple(f"layer{i}.add", "add", [x, r])
    x = b.simple("pool", "maxpool", [x], kernel=4, stride=4)
    x = b.linear("fc", b.simple("flatten", "flatten", [x]))
    b.check_keys_used("custResNet")
    return Graph(b.nodes, (3, 32, 32), name="custresnet", description=f"custResNet from {name}",
                 mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


# the one line that turns a user's own nn.Module (its class importable, its state_dict loaded) into a model
# file the tool reads without running code
ONNX_EXPORT_LINE = ("torch.onnx.export(model.eval(), torch.zeros(1, 3, 32, 32), \"model.onnx\") in the Python that "
                    "defines your model, then mpc-export build model.onnx")

ARCHITECTURES = [(_is_pruned_resnet, _pruned_resnet), (_is_resnet_a, _resnet_a), (_is_custresnet, _custresnet)]


def graph_from_state_dict(state: dict, name: str) -> Graph:
    """The IR of a known architecture's state_dict (numpy arrays), pruning masks applied."""
    state = apply_prune_masks(state)
    for matches, build in ARCHITECTURES:
        if matches(state):
            return build(state, name)
    sample = ", ".join(list(state)[:4])
    raise UserError(f"unknown architecture: state_dict keys ({sample}, ...) match no known model "
                    f"(pruned-ResNet, ResNet-20 option A, custResNet); for your own architecture export it to ONNX and "
                    f"build that: {ONNX_EXPORT_LINE}")
