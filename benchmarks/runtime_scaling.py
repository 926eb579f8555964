"""Real 3-party runs of small CNNs of growing size, and an extrapolation to the seed pruned-ResNet.

    FANNG_RUNTIME=... python benchmarks/runtime_scaling.py [--sizes 4,8,16] [--compiler ../shared/tools/mamba-compiler]

For each size c: conv(3->c) + BN + ReLU + avgpool, conv(c->c) + BN + ReLU + avgpool, linear, on 16x16
inputs, one execution. Prints per run: the compiler's preprocessing requirement (triples, bits), the
players' wall time, max |MPC - reference| vs bound; then a least-squares fit of wall time on triples and
bits and what it predicts for the seed program (its requirement read from the same compiler).
One run at a time: each takes ~11.5 GB.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from mpc_export.cli.build import BuildOptions, build
from mpc_export.cli.verify import VerifyOptions, verify
from mpc_export.run.runtime import RunOptions, run

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def requirement(program: Path) -> tuple[int, int]:
    proc = subprocess.run([str(SHARED / "tools" / "mamba-compile"), str(program)], capture_output=True, text=True, check=True)
    need = ast.literal_eval(json.loads(proc.stdout.strip().splitlines()[-1])["requires"])
    return need.get(("modp", "triple"), 0), need.get(("modp", "bit"), 0)


def model(c: int) -> torch.nn.Module:
    torch.manual_seed(c)
    layers = [torch.nn.Conv2d(3, c, 3, padding=1), torch.nn.BatchNorm2d(c), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
              torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.BatchNorm2d(c), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
              torch.nn.Flatten(), torch.nn.Linear(c * 16, 10)]
    return torch.nn.Sequential(*layers).eval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="4,8,16")
    parser.add_argument("--compiler", type=Path, default=SHARED / "tools" / "mamba-compiler")
    args = parser.parse_args()
    runtime = Path(os.environ["FANNG_RUNTIME"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in [int(v) for v in args.sizes.split(",")]:
            onnx_path = Path(tmp) / f"cnn{c}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model(c), torch.zeros(1, 3, 16, 16), str(onnx_path), dynamo=False)
            image = Path(tmp) / "image.npy"
            np.save(image, np.random.default_rng(0).random((3, 16, 16)))
            out = Path(tmp) / f"out{c}"
            manifest = build(BuildOptions(model=onnx_path, out=out, inputs=[image]))
            triples, bits = requirement(out / "program" / manifest["program"]["name"])
            result = run(RunOptions(directory=out, runtime=runtime, compiler=args.compiler, timeout=3600), progress=lambda m: None)
            report = verify(VerifyOptions(directory=out, mpc_log=result.log_path, onnx=False, min_agreement=0.0))
            rows.append({"channels": c, "multiplications": manifest["cost"]["totals"]["multiplications"], "triples": triples,
                         "bits": bits, "players_s": round(result.wall_s, 1), "peak_mb": max(result.peak_mb),
                         "max_ulp_err": report["mpc"]["max_ulp_err"], "bound_ulp": report["mpc"]["bound_ulp"]})
            print(json.dumps(rows[-1]), flush=True)
        seed = Path(tmp) / "seed"
        manifest = build(BuildOptions(model=ROOT / "examples" / "pruned_resnet_cifar10.pth", out=seed))
        seed_triples, seed_bits = requirement(seed / "program" / manifest["program"]["name"])
    # triples and bits grow together in these programs, so fit on triples alone (bits ride along)
    a = np.array([[1.0, r["triples"]] for r in rows])
    y = np.array([r["players_s"] for r in rows])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    predicted = coef @ [1.0, seed_triples]
    print("| channels | multiplications | triples | bits | players wall s | peak MB/player | max |MPC - ref| ulp | bound ulp |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['channels']} | {r['multiplications']:,} | {r['triples']:,} | {r['bits']:,} | {r['players_s']} | {r['peak_mb']} | "
              f"{r['max_ulp_err']} | {r['bound_ulp']} |")
    print(f"fit: wall_s = {coef[0]:.1f} + {coef[1] * 1e6:.2f} us/triple (with its bits)")
    print(f"seed pruned-ResNet: {seed_triples:,} triples, {seed_bits:,} bits -> predicted {predicted / 3600:.1f} h of player time")


if __name__ == "__main__":
    main()
