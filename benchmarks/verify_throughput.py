"""Throughput of the exact fixed-point reference vs float PyTorch on the same images, in one process.

    python benchmarks/verify_throughput.py [--images 500] [--batch 250] [--model examples/pruned_resnet_cifar10.pth]

Prints images/s of: PyTorch float32 (the float model), the exact integer reference, and their ratio.
Images are the CIFAR-10 test set from ../shared when present, else random pixels.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mpc_export.fold import lower_for_mpc
from mpc_export.load import load_model
from mpc_export.load.torch_models import torch_module
from mpc_export.fixedpoint import FixedSpec, encode
from mpc_export.quantize.graph import quantize_graph
from mpc_export.reference.run import run_fixed

ROOT = Path(__file__).resolve().parents[1]


def images(n: int) -> np.ndarray:
    data = ROOT.parent / "shared" / "fixtures" / "cifar10_test.npz"
    if data.exists():
        return np.load(data)["x"][:n].transpose(0, 3, 1, 2).astype(np.float64) / 255.0
    return np.random.default_rng(0).random((n, 3, 32, 32))


def rate(fn, x: np.ndarray, batch: int, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(x), batch):
            fn(x[i:i + batch])
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--model", type=Path, default=ROOT / "examples" / "pruned_resnet_cifar10.pth")
    args = parser.parse_args()
    torch.set_num_threads(2)
    fx = FixedSpec()
    graph, _ = lower_for_mpc(load_model(args.model))
    quantize_graph(graph, fx)
    module = torch_module(graph.name, args.model).float()
    x = images(args.images)

    def float_torch(xb):
        with torch.no_grad():
            return module(torch.from_numpy(xb).float())

    def reference(xb):
        return run_fixed(graph, fx, encode(xb, fx.frac_bits))

    torch_rate = rate(float_torch, x, args.batch)
    ref_rate = rate(reference, x, args.batch)
    print(f"| implementation | images/s ({args.images} images, batch {args.batch}, {torch.get_num_threads()} threads) |")
    print("| --- | --- |")
    print(f"| PyTorch float32 | {torch_rate:.0f} |")
    print(f"| exact fixed-point reference | {ref_rate:.0f} |")
    print(f"| ratio reference / float | {ref_rate / torch_rate:.2f} |")


if __name__ == "__main__":
    main()
