"""Wall time of `mpc-export verify DIR --dataset NPZ` on N images, in one process.

    python benchmarks/verify_dataset.py [--images 10000] [--dir /tmp/seed] [--json report.json] [--profile 25]
                                        [--default-allocator]

Builds the seed model into --dir first when it holds no manifest.json. Prints the seconds verify took
(the report's own timer and the wall clock around it), the accuracy rows, and with --profile the
functions with the most cumulative time. --json writes the report, to compare two runs field by field.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import time
from pathlib import Path

import torch

from mpc_export.cli.memory import keep_freed_memory
from mpc_export.pipeline.verify import VerifyOptions, verify

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "fixtures" / "cifar10_test.npz"
SEED_MODEL = ROOT / "examples" / "pruned_resnet_cifar10.pth"


def ensure_build(directory: Path) -> None:
    """`mpc-export build` of the seed model into ``directory`` unless a build is already there."""
    if (directory / "manifest.json").is_file():
        return
    subprocess.run([sys.executable, "-m", "mpc_export.cli.main", "build", str(SEED_MODEL), "--out", str(directory), "--force"],
                   check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/seed"))
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--json", type=Path, default=None, help="write the verify report here")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS", help="print this many cProfile rows (cumulative)")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's allocator as it is (the CLI keeps freed memory for the next batch)")
    args = parser.parse_args()
    ensure_build(args.dir)
    if not args.default_allocator:
        keep_freed_memory()  # as `mpc-export verify --dataset` does
    opts = VerifyOptions(directory=args.dir, dataset=args.dataset, limit=args.images)
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    report = verify(opts)
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - start
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"verify --dataset on {report['images']} images ({torch.get_num_threads()} torch threads): {wall:.1f} s wall, "
          f"report {report['seconds']} s, ok {report['ok']}")
    for row in report["stages"]:
        print(f"  {row['stage']}: accuracy {row['accuracy']}, agreement with float {row['agreement_with_float']}")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
