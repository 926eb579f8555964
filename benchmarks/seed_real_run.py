"""The seed pruned-ResNet run for real: build (default options: exact truncation), 3 players on
127.0.0.1 with one real CIFAR-10 test image, logits compared with the reference.

    FANNG_RUNTIME=~/.cache/fanng-runtime/<hash> python benchmarks/seed_real_run.py \
        [--image ../shared/fixtures/image_1.pt] [--truncation exact] [--timeout 5400]

Writes benchmarks/results/seed_real_run.json: model, truncation, triples and bits (the real compiler's
"Program requires" count), players_s, peak_mb_per_player, executions, max_ulp_err, classes_match, and
the rounds the cost report states. A benchmark, not a test: it takes ~30 min and ~6.4 GB per player;
run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from mpc_export.pipeline.build import BuildOptions, build
from mpc_export.fixedpoint import FixedSpec, Protocol
from mpc_export.backends.mamba.runtime import RunOptions, run
from runtime_scaling import requirement  # the compiler's count, one helper for both benchmarks

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def traffic(log: Path) -> dict:
    """What player 0's runtime reported sending ("Sent N elements in R rounds"), and the filtered lines."""
    text = log.read_text(errors="replace")
    sent = re.findall(r"Sent (\d+) elements in (\d+) rounds", text)
    omitted = re.findall(r"\[mpc-export: ([\d,]+) lines", text)
    return {"elements_sent": int(sent[-1][0]) if sent else None, "runtime_rounds": int(sent[-1][1]) if sent else None,
            "log_lines_omitted": int(omitted[0].replace(",", "")) if omitted else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=SHARED / "fixtures" / "image_1.pt")
    parser.add_argument("--truncation", default="exact", choices=["exact", "probabilistic"])
    parser.add_argument("--runtime", type=Path, default=Path(os.environ.get("FANNG_RUNTIME", "")))
    parser.add_argument("--compiler", type=Path, default=SHARED / "tools" / "mamba-compiler")
    parser.add_argument("--timeout", type=float, default=5400.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "seed_real_run.json")
    parser.add_argument("--keep-build", type=Path, default=None, help="build here (kept) instead of a temporary folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep_build or Path(tmp) / "seed"
        fx = FixedSpec(protocol=Protocol(truncation=args.truncation))
        manifest = build(BuildOptions(model=ROOT / "examples" / "pruned_resnet_cifar10.pth", out=directory, inputs=[args.image],
                                      fx=fx, force=args.keep_build is not None))
        triples, bits = requirement(directory / "program" / manifest["program"]["name"])
        started = time.perf_counter()
        result = run(RunOptions(directory=directory, runtime=args.runtime, compiler=args.compiler, timeout=args.timeout),
                     progress=lambda msg: print(msg, flush=True))
        total_s = time.perf_counter() - started
        errors, classes = [], []
        for execution in manifest["executions"]:
            mpc = result.logits[execution["index"]]
            reference = execution["logits"]
            errors += [abs(mpc[j] - reference[j]) for j in range(len(reference))]
            classes.append(int(np.argmax([mpc[j] for j in range(len(reference))])) == execution["predicted_class"])
        record = {
            "model": "pruned_resnet_cifar10 (seed, examples/pruned_resnet_cifar10.pth)",
            "image": str(args.image.name),
            "truncation": args.truncation,
            "protocol": manifest["protocol"],
            "triples": triples,
            "bits": bits,
            "cost_report": {k: manifest["cost"]["totals"][k] for k in ("multiplications", "truncations", "comparisons", "triples", "bits", "rounds")},
            "runtime_check": result.runtime_check,
            "runtime": os.environ.get("FANNG_RUNTIME_DESCRIPTION", "FANNG-MPC, ../shared/tools/fanng-runtime/build (secure by default)"),
            "runtime_traffic": traffic(result.log_path),
            "estimate_s": round(result.estimate_s, 1),
            "players_s": round(result.wall_s, 1),
            "compile_s": round(result.compile_s, 1),
            "total_s": round(total_s, 1),
            "peak_mb_per_player": result.peak_mb,
            "executions": len(manifest["executions"]),
            "max_ulp_err": max(errors),
            "classes_match": all(classes),
            "mpc_logits": {str(e): [v for _, v in sorted(values.items())] for e, values in result.logits.items()},
            "reference_logits": {str(e["index"]): e["logits"] for e in manifest["executions"]},
            "predicted_class": [e["predicted_class"] for e in manifest["executions"]],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
