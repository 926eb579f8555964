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


def torch_module(graph_name: str, model_path) -> nn.Module:
    """The float PyTorch model for a model file the state_dict front end recognised as graph_name."""
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    builders = {"pruned_resnet": pruned_resnet_from_state}
    return builders[graph_name](state)
