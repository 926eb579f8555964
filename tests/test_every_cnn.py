"""Networks people copy from tutorials and papers export, from modules made here: the PyTorch CIFAR-10
tutorial net (5x5 convolutions without padding, max pool after ReLU, three linear layers), a VGG-style
conv-BN-ReLU-MaxPool stack, a strided net flattened without pooling, and a residual block fed by a max
pool. Each is trained briefly on CIFAR-10 images 5,000-9,999, exported by both torch.onnx exporters
(TorchScript and dynamo), built, and verified on the first 500 test images: every layer inside its
tolerance against PyTorch/onnxruntime and >= 99 % argmax agreement between the fixed-point reference and
onnxruntime's float model (verify's --min-agreement)."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import DATASET, need_shared, run_cli

pytestmark = pytest.mark.slow


class TutorialNet(torch.nn.Module):
    """The PyTorch CIFAR-10 tutorial's network, as written there."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 6, 5)
        self.pool = torch.nn.MaxPool2d(2, 2)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(16 * 5 * 5, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _conv_bn_relu(cin, cout, stride=1):
    return [torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]


class VGGStack(torch.nn.Module):
    """Two VGG stages (conv-BN-ReLU x 2, then a 2x2 max pool), flatten, linear."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(*_conv_bn_relu(3, 8), *_conv_bn_relu(8, 8), torch.nn.MaxPool2d(2),
                                            *_conv_bn_relu(8, 16), *_conv_bn_relu(16, 16), torch.nn.MaxPool2d(2))
        self.classifier = torch.nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        return self.classifier(self.features(x).view(x.size(0), -1))


class StridedFlat(torch.nn.Module):
    """Stride-2 convolutions only, flattened without any pooling, two linear layers."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(*_conv_bn_relu(3, 8, stride=2), *_conv_bn_relu(8, 16, stride=2))
        self.fc1, self.fc2 = torch.nn.Linear(16 * 8 * 8, 32), torch.nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(self.features(x), 1))))


class ResidualFromMaxPool(torch.nn.Module):
    """conv-BN-ReLU, a 2x2 max pool feeding a residual block (identity shortcut), global average pool."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(*_conv_bn_relu(3, 16), torch.nn.MaxPool2d(2))
        self.conv1, self.bn1 = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16)
        self.conv2, self.bn2 = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


MODELS = [TutorialNet, VGGStack, StridedFlat, ResidualFromMaxPool]
TRAIN = slice(5000, 10000)
CHECKED = 500


def _trained(module_cls) -> torch.nn.Module:
    """One short epoch of SGD on 5,000 test-set images the check below does not use (enough for weights
    and BN statistics that look trained; accuracy is not the point)."""
    data = np.load(need_shared(DATASET))
    x = torch.from_numpy(np.ascontiguousarray(data["x"][TRAIN].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0)
    y = torch.from_numpy(data["y"][TRAIN].astype(np.int64))
    torch.manual_seed(0)
    model = module_cls()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for start in range(0, len(x), 64):
        optimiser.zero_grad()
        F.cross_entropy(model(x[start:start + 64]), y[start:start + 64]).backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module", params=MODELS, ids=lambda c: c.__name__)
def trained(request):
    return _trained(request.param)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript_exporter", "dynamo_exporter"])
def test_builds_and_verifies_on_500_images(trained, dynamo, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(trained, torch.zeros(1, 3, 32, 32), str(path), dynamo=dynamo)
    out = tmp_path / "out"
    code, _, err = run_cli(["build", path, "--out", out, "--json"], capsys)
    assert code == 0, err
    code, stdout, err = run_cli(["verify", out, "--dataset", need_shared(DATASET), "--limit", CHECKED,
                                 "--min-agreement", "99"], capsys)
    assert code == 0, stdout + err
