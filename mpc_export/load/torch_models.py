"""PyTorch modules of the known architectures, rebuilt from a state_dict (widths from the weights).

Used to cross-check the IR against the float model (forward hooks) and to export ONNX for onnxruntime.
The module names match the state_dict keys, which is the architecture's contract.
"""

from __future__ import annotations

import torch
from torch import nn


class PrunedResNet(nn.Module):
    """The seed 7-layer pruned-ResNet: ``network`` is one nn.Sequential (indices are state_dict keys)."""

    def __init__(self, widths=(32, 64, 128, 128, 256, 256), hidden=32, classes=10, in_channels=3):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            layers.append(nn.AvgPool2d(2, 2) if index % 2 == 1 else nn.Dropout(0.25))
            channels = width
        layers += [nn.Flatten(), nn.Linear(channels * 4 * 4, hidden), nn.Dropout(0.25), nn.ReLU(), nn.Linear(hidden, classes)]
        self.network = nn.Sequential(*layers)

    def forward(self, x):
        return self.network(x)


def pruned_resnet_from_state(state: dict) -> nn.Module:
    widths = tuple(int(state[f"network.{i}.weight"].shape[0]) for i in (0, 4, 8, 12, 16, 20))
    hidden, classes = int(state["network.25.weight"].shape[0]), int(state["network.28.weight"].shape[0])
    model = PrunedResNet(widths, hidden, classes)
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    return model.eval()




class Add(nn.Module):
    """a + b as a module, so a forward hook sees the residual sum."""

    def forward(self, a, b):
        return a + b


class ShortcutA(nn.Module):
    """ResNet option A: x[:, :, ::2, ::2] zero-padded with `pad` channels on each side (no parameters)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlockA(nn.Module):
    def __init__(self, in_planes: int, mid: int, planes: int, stride: int, projection: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(mid, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if projection and (stride != 1 or in_planes != planes):
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        else:
            self.shortcut = ShortcutA(planes // 4) if stride != 1 or in_planes != planes else nn.Identity()
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(self.add(out, self.shortcut(x)))


class ResNetA(nn.Module):
    """ResNet-20 style CIFAR ResNet with option-A shortcuts; block widths (mid, out) per block."""

    def __init__(self, stem: int, blocks: list[list[tuple[int, int]]], classes: int = 10, projection: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        channels = stem
        for stage, widths in enumerate(blocks, start=1):
            layer = []
            for index, (mid, out) in enumerate(widths):
                stride = 2 if stage > 1 and index == 0 else 1
                layer.append(BasicBlockA(channels, mid, out, stride, projection))
                channels = out
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
        self.stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in range(1, self.stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.linear(self.flatten(self.avgpool(x)))


def resnet_a_blocks(state: dict) -> tuple[int, list[list[tuple[int, int]]]]:
    stem = int(state["conv1.weight"].shape[0])
    blocks = []
    stage = 1
    while f"layer{stage}.0.conv1.weight" in state:
        widths, index = [], 0
        while f"layer{stage}.{index}.conv1.weight" in state:
            widths.append((int(state[f"layer{stage}.{index}.conv1.weight"].shape[0]), int(state[f"layer{stage}.{index}.conv2.weight"].shape[0])))
            index += 1
        blocks.append(widths)
        stage += 1
    return stem, blocks


def resnet_a_from_state(state: dict) -> nn.Module:
    stem, blocks = resnet_a_blocks(state)
    projection = any(".shortcut.0.weight" in k for k in state)
    model = ResNetA(stem, blocks, int(state["linear.weight"].shape[0]), projection)
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    return model.eval()


class ConvLayer(nn.Module):
    """custResNet's convLayer: Conv2d(3x3, pad 1, no bias) [-> MaxPool2d(2)] -> BatchNorm2d -> ReLU."""

    def __init__(self, cin: int, cout: int, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else None
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.conv(x)
        if self.pool is not None:
            x = self.pool(x)
        return self.relu(self.bn(x))


class CustBlock(nn.Module):
    def __init__(self, cin: int, cout: int, residual: bool):
        super().__init__()
        self.conv_pool = ConvLayer(cin, cout, pool=True)
        self.residual = nn.Sequential(ConvLayer(cout, cout, False), ConvLayer(cout, cout, False)) if residual else None
        self.add = Add() if residual else None

    def forward(self, x):
        x = self.conv_pool(x)
        return self.add(x, self.residual(x)) if self.residual is not None else x


class CustResNet(nn.Module):
    def __init__(self, widths=(64, 128, 256, 512), residual=(True, False, True), classes=10):
        super().__init__()
        self.prep = ConvLayer(3, widths[0], pool=False)
        for i in range(3):
            setattr(self, f"layer{i + 1}", CustBlock(widths[i], widths[i + 1], residual[i]))
        self.pool = nn.MaxPool2d(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[3], classes)

    def forward(self, x):
        x = self.prep(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


def custresnet_config(state: dict):
    widths = (int(state["prep.conv.weight"].shape[0]),) + tuple(int(state[f"layer{i}.conv_pool.conv.weight"].shape[0]) for i in (1, 2, 3))
    residual = tuple(f"layer{i}.residual.0.conv.weight" in state for i in (1, 2, 3))
    return widths, residual


def custresnet_from_state(state: dict) -> nn.Module:
    widths, residual = custresnet_config(state)
    model = CustResNet(widths, residual, int(state["fc.weight"].shape[0]))
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    return model.eval()


BUILDERS = {"pruned_resnet": pruned_resnet_from_state, "resnet20": resnet_a_from_state, "custresnet": custresnet_from_state}


def torch_module(graph_name: str, model_path) -> nn.Module:
    """The float PyTorch model for a model file the state_dict front end recognised as graph_name (a
    pruning still attached is applied: weight_orig * weight_mask)."""
    from .state_dict import apply_prune_masks

    state = torch.load(model_path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        state = state.state_dict()
    state = apply_prune_masks({key: value.detach().cpu().numpy() for key, value in state.items()})
    return BUILDERS["resnet20" if graph_name.startswith("resnet") else graph_name](state)
