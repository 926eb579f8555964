"""What each protocol option costs, per model: triples, random bits and rounds of the secure run.

    python benchmarks/cost_options.py [--calibration-images 2000] [--out benchmarks/results/cost_options.md]

For the seed pruned-ResNet, ResNet-20, custResNet (../shared/fixtures) and a 90 %-sparse ResNet-18
(sparse_resnet18.py), builds each model once plain and once calibrated and prints the cost report's
totals for each option (manifest cost.options) (tests/test_cost.py checks that these equal the real MAMBA
compiler's count for the default, probabilistic, public-weights, public-sparsity and calibrated programs).
The time column is the runtime fit of real runs (benchmarks/results/runtime_fit.json, from
runtime_scaling.py: players' wall time on triples + random bits and rounds): an estimate, not a run.
``--from-json`` re-renders the table from the rows a previous run saved (with a refreshed fit).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from mpc_export.pipeline.build import BuildOptions, build
from mpc_export.fixedpoint import FixedSpec
from sparse_resnet18 import sparse_resnet18

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = {"seed pruned-ResNet": ROOT / "examples" / "pruned_resnet_cifar10.pth",
          "ResNet-20": SHARED / "fixtures" / "resnet20_cifar10.pth",
          "custResNet": SHARED / "fixtures" / "custresnet_cifar10.pth",
          "ResNet-18, 90 % sparse": None}  # made by sparse_resnet18.py (no trained one in ../shared)
# (label, convolution, weights, sparsity): every option, read from one build's cost.options (the cost
# report's totals for each option; tests/test_cost.py checks them against the compiler)
OPTIONS = [("exact, direct", "direct", "private", "private"),
           ("exact, Winograd (default)", "winograd", "private", "private"),
           ("exact, public sparsity", "winograd", "private", "public"),
           ("exact, direct, public weights", "direct", "public", "private")]


def estimated_minutes(row: dict) -> float:
    """Players' wall time the runtime fit predicts for a program's requirement, in minutes."""
    from runtime_scaling import predict

    fit = json.loads((ROOT / "benchmarks" / "results" / "runtime_fit.json").read_text())["fit"]
    return predict(fit, row["triples"], row["bits"], row["rounds"]) / 60


def render(rows: list[dict], calibration_images: int) -> str:
    lines = ["| model | protocol | triples | random bits | rounds | est. players' time |", "| --- | --- | --- | --- | --- | --- |"]
    for t in rows:
        lines.append(f"| {t['model']} | {t['label']} | {t['triples']:,} | {t['bits']:,} | {t['rounds']:,} | "
                     f"{estimated_minutes(t):.0f} min |")
    return "\n".join(lines) + (f"\n\ncalibrated: comparisons narrowed to the peaks of the first {calibration_images} "
                               "CIFAR-10 test images plus 4 bits. public sparsity: one product per non-zero weight "
                               "(Winograd kept for a layer where it is cheaper); ResNet-18: random weights, BN statistics "
                               "from 512 test images, 90 % global magnitude pruning (sparse_resnet18.py). Time: the fit "
                               "of real runs in runtime_fit.json\n")


def _rows(manifest: dict, calibrated: bool) -> list[tuple[str, dict]]:
    options = {(o["convolution"], o["weights"], o["sparsity"]): o for o in manifest["cost"]["options"]}
    rows = []
    for label, *key in OPTIONS:
        if calibrated and key[0] == "direct" and key[1] == "private":
            continue  # the calibrated direct program: not shown (Winograd is cheaper)
        rows.append((label + (", calibrated" if calibrated else ""), options[tuple(key)]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calibration-images", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cost_options.md")
    parser.add_argument("--from-json", action="store_true", help="re-render OUT from the rows saved beside it")
    args = parser.parse_args()
    saved = args.out.with_suffix(".json")
    if args.from_json:
        rows = json.loads(saved.read_text())
    else:
        rows = []
        data = SHARED / "fixtures" / "cifar10_test.npz"
        with tempfile.TemporaryDirectory() as tmp:
            for model, path in MODELS.items():
                if path is None:
                    path = Path(tmp) / "resnet18_sparse.pth"
                    pruned, _ = sparse_resnet18(0.9, 512)
                    torch.save(pruned.state_dict(), path)
                for calibrated in (False, True):
                    manifest = build(BuildOptions(model=path, out=Path(tmp) / "out", force=True, fx=FixedSpec(),
                                                  calibrate=data if calibrated else None,
                                                  calibrate_limit=args.calibration_images if calibrated else None))
                    for label, t in _rows(manifest, calibrated):
                        rows.append({"model": model, "label": label, **{k: t[k] for k in ("triples", "bits", "rounds")}})
                        print(rows[-1], flush=True)
        saved.write_text(json.dumps(rows, indent=1) + "\n")
    args.out.write_text(render(rows, args.calibration_images))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
