"""A 90 %-sparse ResNet-18 (CIFAR-10 topology: 64-128-256-512, two basic blocks per stage, 1x1 projection
shortcuts), the model the public-sparsity option is for.

    python benchmarks/sparse_resnet18.py OUT.pth [--sparsity 0.9] [--images 512]

../shared/fixtures has no trained sparse ResNet-18, so this makes one with the same cost profile: seeded
random weights, the BatchNorm statistics set on real CIFAR-10 test images (so activations stay in range),
then global magnitude pruning of every conv and linear weight to the given sparsity (the cost of a
secure run depends on the shapes and on which weights are zero, not on their trained values; its
accuracy is chance). Writes a state_dict the ResNet-A loader reads.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from mpc_export.load.torch_models import ResNetA

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "fixtures" / "cifar10_test.npz"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def sparse_resnet18(sparsity: float, images: int, seed: int = 0) -> tuple[torch.nn.Module, float]:
    """The pruned model and its measured fraction of zero weights."""
    torch.manual_seed(seed)
    widths = [[(64, 64)] * 2, [(128, 128)] * 2, [(256, 256)] * 2, [(512, 512)] * 2]
    model = ResNetA(64, widths, 10, projection=True)
    data = np.load(DATASET)["x"][-images:].transpose(0, 3, 1, 2) / 255.0
    x = (torch.from_numpy(data).float() - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    model.train()
    with torch.no_grad():  # BatchNorm running statistics from real images (momentum 0.1: a few passes)
        for _ in range(3):
            for batch in x.split(128):
                model(batch)
    model.eval()
    weights = [p for _, p in model.named_parameters() if p.dim() > 1]
    magnitudes = torch.cat([p.detach().abs().flatten() for p in weights])
    threshold = magnitudes.kthvalue(math.ceil(sparsity * magnitudes.numel())).values
    with torch.no_grad():
        for p in weights:
            p[p.abs() <= threshold] = 0
    zeros = sum(int((p == 0).sum()) for p in weights)
    return model, zeros / magnitudes.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()
    model, zero_fraction = sparse_resnet18(args.sparsity, args.images)
    torch.save(model.state_dict(), args.out)
    print(f"wrote {args.out}: {zero_fraction * 100:.2f} % of the conv and linear weights are zero")


if __name__ == "__main__":
    main()
