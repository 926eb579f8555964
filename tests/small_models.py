"""Small CNNs made in the tests (8x8 inputs, a few channels), exported to ONNX and built: every op and
variant the program has, cheap enough for a plaintext execution or a real 3-party run."""

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from conftest import run_cli


class SmallAvg(torch.nn.Module):
    """conv + BN + ReLU + 2x2 average pool + linear on 8x8 inputs."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        self.pool, self.flat, self.fc = torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.relu(self.bn(self.conv(x))))))


class SmallResidual(torch.nn.Module):
    """conv + 2x2 max pool + BN + ReLU, a residual conv + BN + ReLU added back, global max pool, linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.pool1, self.bn1, self.relu1 = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.MaxPool2d(2), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        self.conv2, self.bn2, self.relu2 = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        self.pool2, self.flat, self.fc = torch.nn.MaxPool2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 3)

    def forward(self, x):
        x = self.relu1(self.bn1(self.pool1(self.conv1(x))))
        x = x + self.relu2(self.bn2(self.conv2(x)))
        return self.fc(self.flat(self.pool2(x)))


class SmallStrided(torch.nn.Module):
    """conv stride 2 + ReLU (no BN), 1x1 conv + BN (no ReLU), global average pool over 3x3 (a rounded
    reciprocal), linear + ReLU, linear: on 6x6 inputs."""

    input_size = 6

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1 = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU()
        self.conv2, self.bn2 = torch.nn.Conv2d(4, 5, 1), torch.nn.BatchNorm2d(5)
        self.pool, self.flat = torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
        self.fc1, self.relu2, self.fc2 = torch.nn.Linear(5, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)

    def forward(self, x):
        x = self.bn2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc2(self.relu2(self.fc1(self.flat(self.pool(x)))))


class SmallPools(torch.nn.Module):
    """Pooling as its own op: conv + BN + ReLU then a 2x2 max pool (after the ReLU, not fused), a
    residual block fed by it, a 2x2 max pool after the residual add, flatten, linear + ReLU, linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        self.pool1 = torch.nn.MaxPool2d(2)
        self.conv2, self.bn2, self.relu2 = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        self.pool2, self.flat = torch.nn.MaxPool2d(2), torch.nn.Flatten()
        self.fc1, self.relu3, self.fc2 = torch.nn.Linear(16, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = x + self.relu2(self.bn2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(self.flat(self.pool2(x)))))


class SmallVGG(torch.nn.Module):
    """A VGG-style stack on 12x12: conv + BN + ReLU + 3x3 average pool (a rounded reciprocal), conv + BN +
    ReLU + 2x2 max pool (after the ReLU), flatten, linear."""

    input_size = 12

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        self.pool1 = torch.nn.AvgPool2d(3)
        self.conv2, self.bn2, self.relu2 = torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        self.pool2, self.flat, self.fc = torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        return self.fc(self.flat(self.pool2(self.relu2(self.bn2(self.conv2(x))))))


class SmallStridedFlat(torch.nn.Module):
    """A strided convolution flattened without pooling: conv stride 2 + ReLU, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.conv, self.relu = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU()
        self.flat, self.fc = torch.nn.Flatten(), torch.nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(self.flat(self.relu(self.conv(x))))


class SmallAddFlat(torch.nn.Module):
    """A linear layer reading a residual sum's zero-padded planes: conv + BN + ReLU, x + conv(x) + ReLU,
    flatten, linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.BatchNorm2d(2), torch.nn.ReLU()
        self.conv2, self.relu2 = torch.nn.Conv2d(2, 2, 3, padding=1), torch.nn.ReLU()
        self.flat, self.fc = torch.nn.Flatten(), torch.nn.Linear(128, 3)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        return self.fc(self.flat(self.relu2(x + self.conv2(x))))


class SmallMLP(torch.nn.Module):
    """Flatten + linear + ReLU + linear: a dense layer reading the input itself (from zero-padded planes)."""

    def __init__(self):
        super().__init__()
        self.flat, self.fc1, self.relu, self.fc2 = torch.nn.Flatten(), torch.nn.Linear(192, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.flat(x))))


class SmallOddKernels(torch.nn.Module):
    """Odd kernels with every padding: 5x5 without padding (the CIFAR-10 tutorial's) + ReLU + 2x2 max pool,
    5x5 padding 2 + BN + ReLU, 7x7 padding 3 stride 2 + ReLU, 3x3 padding 0, flatten, linear: on 12x12."""

    input_size = 12

    def __init__(self):
        super().__init__()
        self.conv1, self.pool = torch.nn.Conv2d(3, 4, 5), torch.nn.MaxPool2d(2)
        self.conv2, self.bn2 = torch.nn.Conv2d(4, 4, 5, padding=2), torch.nn.BatchNorm2d(4)
        self.conv3 = torch.nn.Conv2d(4, 3, 7, stride=2, padding=3)
        self.conv4, self.flat, self.fc = torch.nn.Conv2d(3, 2, 1), torch.nn.Flatten(), torch.nn.Linear(8, 3)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(self.flat(self.conv4(torch.relu(self.conv3(x)))))


def prune_convolutions(model: torch.nn.Module, fraction: float, seed: int = 0) -> torch.nn.Module:
    """Zero a random ``fraction`` of every convolution's weights (unstructured pruning, seeded), and the whole
    kernel of the first convolution's output channel 0 (an output channel with no non-zero weight)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        for conv in convolutions:
            conv.weight.mul_((torch.rand(conv.weight.shape, generator=generator) >= fraction).to(conv.weight.dtype))
        if convolutions:  # (a model without convolutions has nothing to prune)
            convolutions[0].weight[0].zero_()
    return model


def randomise_batchnorm(model: torch.nn.Module, mean: float = 0.2, bias: float | None = None) -> torch.nn.Module:
    """Random BatchNorm statistics and scales (so a dropped or misfolded BN would show): running mean in
    [-mean, mean], running var in [0.5, 2], weight in [0.5, 1.5], and the bias in [-bias, bias] if given."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-mean, mean)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                if bias is not None:
                    m.bias.uniform_(-bias, bias)
    return model


def export_small(module_cls, path, seed=1, prune=0.0):
    """module_cls (seeded weights, random BN statistics, ``prune``: that fraction of each conv's weights
    zeroed) exported to ONNX at ``path`` (its ``input_size``, 8 by default); returns the path."""
    torch.manual_seed(seed)
    model = prune_convolutions(randomise_batchnorm(module_cls()), prune, seed) if prune else randomise_batchnorm(module_cls())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        size = getattr(module_cls, "input_size", 8)
        torch.onnx.export(model.eval(), torch.zeros(1, 3, size, size), str(path), dynamo=False)
    return path


def build_small(module_cls, tmp_path, capsys, seed=1, debug=False, extra=(), prune=0.0):
    """Build module_cls (seeded weights, random BN statistics, ``prune``: that fraction of each conv's
    weights zeroed) with two random images; returns the build directory."""
    path = export_small(module_cls, tmp_path / "small.onnx", seed, prune)
    size = getattr(module_cls, "input_size", 8)
    images = []
    for i in range(2):
        images.append(tmp_path / f"img{i}.npy")
        np.save(images[-1], np.random.default_rng(i).random((3, size, size)))
    out = tmp_path / "out"
    code, _, err = run_cli(["build", path, "--out", out, "--input", images[0], "--input", images[1], "--json"]
                           + (["--debug"] if debug else []) + list(extra), capsys)
    assert code == 0, err
    return out


class OptionANet(torch.nn.Module):
    """conv + BN + ReLU, a ResNet-20 option-A block (stride 2, 8 -> 16 channels), global average pool,
    flatten (as ``flatten_kind`` writes it), linear: on 3 x 8 x 8 inputs."""

    def __init__(self, flatten_kind: str, planes_from_size: bool):
        super().__init__()
        self.flatten_kind, self.planes_from_size = flatten_kind, planes_from_size
        self.conv1, self.bn1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8)
        self.conv2, self.bn2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(16)
        self.conv3, self.bn3 = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(x)))))
        planes = out.size(1) if self.planes_from_size else 16
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
        x = F.adaptive_avg_pool2d(F.relu(out + shortcut), 1)
        if self.flatten_kind == "view":
            x = x.view(x.size(0), -1)
        elif self.flatten_kind == "reshape":
            x = x.reshape(x.size(0), -1)
        else:
            x = torch.flatten(x, 1)
        return self.fc(x)
