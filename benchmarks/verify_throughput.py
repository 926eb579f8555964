"""Throughput of the exact fixed-point reference vs float PyTorch on the same images, in one process.

    python benchmarks/verify_throughput.py [--images 500] [--batch 250] [--repeats 5] [--model examples/pruned_resnet_cifar10.pth]

Prints images/s of PyTorch float32 (the float model) and of the exact integer reference, best and median of
--repeats passes taken in turns, and their ratios.
Images are the CIFAR-10 test set from ../shared when present, else random pixels.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mpc_export.cli.memory import keep_freed_memory
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


def rates(fns: dict, x: np.ndarray, batch: int, repeats: int) -> dict[str, tuple[float, float]]:
    """images/s of each function over all of x, (best, median) of ``repeats`` passes taken in turns
    (one pass of each, then the next round), so that a slow spell of a shared machine hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for i in range(0, len(x), batch):
                fn(x[i:i + batch])
            times[name].append(time.perf_counter() - start)
    return {name: (len(x) / min(t), len(x) / float(np.median(t))) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=5, help="passes of each, taken in turns")
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

    keep_freed_memory()  # as `mpc-export verify --dataset` does
    measured = rates({"float": float_torch, "reference": reference}, x, args.batch, args.repeats)
    (float_best, float_median), (ref_best, ref_median) = measured["float"], measured["reference"]
    print(f"| implementation | images/s, best of {args.repeats} ({args.images} images, batch {args.batch}, "
          f"{torch.get_num_threads()} threads) | median |")
    print("| --- | --- | --- |")
    print(f"| PyTorch float32 | {float_best:.0f} | {float_median:.0f} |")
    print(f"| exact fixed-point reference | {ref_best:.0f} | {ref_median:.0f} |")
    print(f"| ratio reference / float | {ref_best / float_best:.2f} | {ref_median / float_median:.2f} |")

if __name__ == "__main__":
    main()
