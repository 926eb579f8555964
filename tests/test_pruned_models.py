"""Pruned models: ResNet-20 with non-uniform block widths (filters sliced in the test), and a ResNet-18
(projection shortcuts) with 90 % of its weights zeroed by global magnitude pruning."""

import math

import numpy as np
import pytest
import torch

from conftest import DATASET, SHARED, need_shared
from mpc_export.export.tokens import parse_text

pytestmark = pytest.mark.slow


def build_verify(path, tmp_path, images=200):
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.pipeline.verify import VerifyOptions, verify

    need_shared(DATASET)
    out = tmp_path / "out"
    manifest = build(BuildOptions(model=path, out=out))
    return out, manifest, verify(VerifyOptions(directory=out, dataset=DATASET, limit=images))


def test_resnet20_with_non_uniform_block_widths(tmp_path):
    state = torch.load(need_shared(SHARED / "fixtures" / "resnet20_cifar10.pth"), weights_only=True)
    keep = {"layer1.0": 15, "layer1.2": 14, "layer2.1": 30, "layer3.0": 60, "layer3.2": 58}
    for block, k in keep.items():
        # keep the k filters of conv1 with the largest L1 norm, and the matching inputs of conv2
        w = state[f"{block}.conv1.weight"]
        idx = torch.argsort(w.abs().sum(dim=(1, 2, 3)), descending=True)[:k].sort().values
        state[f"{block}.conv1.weight"] = w[idx].clone()
        for key in ("weight", "bias", "running_mean", "running_var"):
            state[f"{block}.bn1.{key}"] = state[f"{block}.bn1.{key}"][idx].clone()
        state[f"{block}.conv2.weight"] = state[f"{block}.conv2.weight"][:, idx].clone()
    path = tmp_path / "resnet20_pruned.pth"
    torch.save(state, path)
    out, manifest, report = build_verify(path, tmp_path)
    widths = {l["origin"][0]: l["shape"][0] for l in manifest["layers"] if l["origin"] and l["origin"][0].endswith("conv1")}
    for block, k in keep.items():
        assert widths[f"{block}.conv1"] == k
    assert report["ok"] and report["agreement"] >= 0.995


@pytest.fixture(scope="module")
def sparse_resnet18(tmp_path_factory):
    from mpc_export.load.torch_models import ResNetA

    torch.manual_seed(0)
    widths = [[(16, 16)] * 2, [(32, 32)] * 2, [(64, 64)] * 2, [(128, 128)] * 2]  # ResNet-18 topology, narrow
    model = ResNetA(16, widths, 10, projection=True)
    data = np.load(need_shared(DATASET))["x"][-512:].transpose(0, 3, 1, 2) / 255.0
    x = (torch.from_numpy(data).float() - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    model.train()
    with torch.no_grad():  # calibrate the BatchNorm statistics on real images
        for _ in range(3):
            model(x)
    model.eval()
    weights = [p for _, p in model.named_parameters() if p.dim() > 1]
    magnitudes = torch.cat([p.detach().abs().flatten() for p in weights])
    threshold = magnitudes.kthvalue(math.ceil(0.9 * magnitudes.numel())).values
    with torch.no_grad():
        for p in weights:
            p[p.abs() <= threshold] = 0
    path = tmp_path_factory.mktemp("r18") / "resnet18_sparse.pth"
    torch.save(model.state_dict(), path)
    zeros = sum(int((p == 0).sum()) for p in weights)
    return path, zeros, magnitudes.numel()


def test_sparse_resnet18_builds_verifies_and_keeps_zeros_exact(sparse_resnet18, tmp_path):
    path, zeros, total = sparse_resnet18
    assert zeros / total >= 0.9
    out, manifest, report = build_verify(path, tmp_path)
    assert report["ok"] and report["agreement"] >= 0.995
    weight_file = next(f for f in manifest["files"] if f["role"] == "parameter" and f["tensor"] in ("all_weight",))
    values = parse_text((out / weight_file["path"]).read_text(), 12)
    assert sum(v == 0 for v in values) >= zeros  # every pruned weight is an exact zero in the file
    sparsity = {t["node"]: t["zero_fraction"] for t in manifest["budget"]["tensors"] if t["tensor"] == "weight"}
    assert np.mean(list(sparsity.values())) > 0.5
