"""What each protocol option costs, per model: triples, random bits and rounds of the secure run.

    python benchmarks/cost_options.py [--calibration-images 2000] [--out benchmarks/results/cost_options.md]

For the seed pruned-ResNet, ResNet-20 and custResNet (../shared/fixtures), builds the program with each
option and prints the cost report's totals (tests/test_cost.py checks that these equal the real MAMBA
compiler's count for the default, probabilistic, public-weights and calibrated programs). The time column
scales the seed's measured real run (benchmarks/results/seed_real_run.json: exact + Winograd, players'
wall time) by triples + random bits, which the issue's measurements price alike (7.7 us per triple, 9.1 us
per bit): an estimate, not a run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mpc_export.cli.build import BuildOptions, build
from mpc_export.fixedpoint import FixedSpec, Protocol

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = {"seed pruned-ResNet": ROOT / "examples" / "pruned_resnet_cifar10.pth",
          "ResNet-20": SHARED / "fixtures" / "resnet20_cifar10.pth",
          "custResNet": SHARED / "fixtures" / "custresnet_cifar10.pth"}
OPTIONS = [("exact, direct", Protocol("exact", "direct"), False),
           ("exact, Winograd (default)", Protocol("exact", "winograd"), False),
           ("exact, Winograd, calibrated", Protocol("exact", "winograd"), True),
           ("exact, direct, public weights", Protocol("exact", "direct", "public"), False),
           ("exact, direct, public weights, calibrated", Protocol("exact", "direct", "public"), True)]


def seed_seconds_per_unit() -> float:
    """Players' seconds per (triple + random bit), from the seed's measured real run."""
    run = json.loads((ROOT / "benchmarks" / "results" / "seed_real_run.json").read_text())
    return run["players_s"] / (run["triples"] + run["bits"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calibration-images", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cost_options.md")
    args = parser.parse_args()
    per_unit = seed_seconds_per_unit()
    data = SHARED / "fixtures" / "cifar10_test.npz"
    lines = ["| model | protocol | triples | random bits | rounds | est. players' time |", "| --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for model, path in MODELS.items():
            for label, protocol, calibrated in OPTIONS:
                manifest = build(BuildOptions(model=path, out=Path(tmp) / "out", force=True, fx=FixedSpec(protocol=protocol),
                                              calibrate=data if calibrated else None,
                                              calibrate_limit=args.calibration_images if calibrated else None))
                t = manifest["cost"]["totals"]
                minutes = per_unit * (t["triples"] + t["bits"]) / 60
                lines.append(f"| {model} | {label} | {t['triples']:,} | {t['bits']:,} | {t['rounds']:,} | {minutes:.0f} min |")
                print(lines[-1], flush=True)
    text = "\n".join(lines) + (f"\n\ncalibrated: comparisons narrowed to the peaks of the first {args.calibration_images} "
                               "CIFAR-10 test images plus 4 bits\n")
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
