"""Real 3-party runs of small CNNs with each protocol option, and a fit of the players' wall time on the
compiler's requirement that prices any program (the cost table's time column).

    FANNG_RUNTIME=... python benchmarks/runtime_scaling.py [--sizes 16,32,64] [--compiler ../shared/tools/mamba-compiler]
                                                          [--out benchmarks/results/runtime_fit.json]

The model with c channels: conv(3->c) + BN + ReLU + avgpool, conv(c->c) + BN + ReLU + avgpool, linear, on
16x16 inputs, one execution, exact truncation. Runs: every size with the default program (Winograd), and at
the middle size the direct program, public weights, and public sparsity on the model with 70 % of its conv
weights zeroed. Each run's logits must equal the reference (exact mode). The seed's real run
(benchmarks/results/seed_real_run.json: Winograd, exact) joins the fit when present. Fit, least squares
with non-negative coefficients: wall_s = fixed + per_unit * (triples + random bits) + per_round * rounds
(the issue measured a triple and a random bit at about the same price). One run at a time: each takes
~12 GB.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from mpc_export.pipeline.build import BuildOptions, build
from mpc_export.pipeline.verify import VerifyOptions, verify
from mpc_export.fixedpoint import FixedSpec, Protocol
from mpc_export.backends.mamba.runtime import RunOptions, run

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"


def requirement(program: Path) -> tuple[int, int]:
    proc = subprocess.run([str(SHARED / "tools" / "mamba-compile"), str(program)], capture_output=True, text=True, check=True)
    need = ast.literal_eval(json.loads(proc.stdout.strip().splitlines()[-1])["requires"])
    return need.get(("modp", "triple"), 0), need.get(("modp", "bit"), 0)


def model(c: int, prune: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(c)
    layers = [torch.nn.Conv2d(3, c, 3, padding=1), torch.nn.BatchNorm2d(c), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
              torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.BatchNorm2d(c), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
              torch.nn.Flatten(), torch.nn.Linear(c * 16, 10)]
    net = torch.nn.Sequential(*layers).eval()
    if prune:
        generator = torch.Generator().manual_seed(c)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.mul_((torch.rand(m.weight.shape, generator=generator) >= prune).float())
    return net


def fit(rows: list[dict]) -> dict:
    """Least squares of players_s on (1, triples + bits, rounds) with every coefficient >= 0 (the best
    solution over the subsets of terms whose free fit is non-negative)."""
    columns = {"fixed_s": [1.0] * len(rows), "s_per_unit": [r["triples"] + r["bits"] for r in rows],
               "s_per_round": [r["rounds"] for r in rows]}
    y = np.array([r["players_s"] for r in rows])
    best = None
    for size in range(1, len(columns) + 1):
        for names in itertools.combinations(columns, size):
            a = np.array([columns[n] for n in names], dtype=float).T
            coef, *_ = np.linalg.lstsq(a, y, rcond=None)
            if np.all(coef >= 0):
                residual = float(np.sum((a @ coef - y) ** 2))
                if best is None or residual < best[0]:
                    best = (residual, dict(zip(names, (float(c) for c in coef))))
    coefficients = {name: best[1].get(name, 0.0) for name in columns}
    return {**coefficients, "rms_residual_s": round((best[0] / len(rows)) ** 0.5, 1)}


def predict(coefficients: dict, triples: int, bits: int, rounds: int) -> float:
    return coefficients["fixed_s"] + coefficients["s_per_unit"] * (triples + bits) + coefficients["s_per_round"] * rounds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="16,32,64")
    parser.add_argument("--compiler", type=Path, default=SHARED / "tools" / "mamba-compiler")
    parser.add_argument("--out", type=Path, default=RESULTS / "runtime_fit.json")
    args = parser.parse_args()
    runtime = Path(os.environ["FANNG_RUNTIME"])
    sizes = [int(v) for v in args.sizes.split(",")]
    middle = sizes[len(sizes) // 2]
    plans = [(c, "winograd (default)", Protocol(), 0.0) for c in sizes]
    plans += [(middle, "direct", Protocol(convolution="direct"), 0.0),
              (middle, "public weights, direct", Protocol(convolution="direct", weights="public"), 0.0),
              (middle, "public sparsity, 70 % zeros", Protocol(sparsity="public"), 0.7)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.npy"
        np.save(image, np.random.default_rng(0).random((3, 16, 16)))
        for index, (c, label, protocol, prune) in enumerate(plans):
            onnx_path = Path(tmp) / f"cnn{index}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model(c, prune), torch.zeros(1, 3, 16, 16), str(onnx_path), dynamo=False)
            out = Path(tmp) / f"out{index}"
            manifest = build(BuildOptions(model=onnx_path, out=out, inputs=[image], fx=FixedSpec(protocol=protocol)))
            triples, bits = requirement(out / "program" / manifest["program"]["name"])
            totals = manifest["cost"]["totals"]
            assert (triples, bits) == (totals["triples"], totals["bits"]), "the cost report differs from the compiler"
            result = run(RunOptions(directory=out, runtime=runtime, compiler=args.compiler, timeout=3600), progress=lambda m: None)
            report = verify(VerifyOptions(directory=out, mpc_log=result.log_path, onnx=False, min_agreement=0.0))
            rows.append({"program": f"c={c}, {label}", "triples": triples, "bits": bits, "rounds": totals["rounds"],
                         "players_s": round(result.wall_s, 1), "peak_mb": max(result.peak_mb),
                         "max_ulp_err": report["mpc"]["max_ulp_err"]})
            print(json.dumps(rows[-1]), flush=True)
    seed_run = RESULTS / "seed_real_run.json"
    if seed_run.exists():
        seed = json.loads(seed_run.read_text())
        rows.append({"program": "seed pruned-ResNet, winograd (default)", "triples": seed["triples"], "bits": seed["bits"],
                     "rounds": seed["cost_report"]["rounds"], "players_s": seed["players_s"],
                     "peak_mb": max(seed["peak_mb_per_player"]), "max_ulp_err": seed["max_ulp_err"]})
    coefficients = fit(rows)
    for r in rows:
        r["fitted_s"] = round(predict(coefficients, r["triples"], r["bits"], r["rounds"]), 1)
    args.out.write_text(json.dumps({"runs": rows, "fit": coefficients}, indent=1) + "\n")
    print("| program | triples | random bits | rounds | players' wall s | fitted s | peak MB/player | max |MPC - ref| |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['program']} | {r['triples']:,} | {r['bits']:,} | {r['rounds']:,} | {r['players_s']} | {r['fitted_s']} | "
              f"{r['peak_mb']} | {r['max_ulp_err']} |")
    print(f"fit: wall_s = {coefficients['fixed_s']:.1f} + {coefficients['s_per_unit'] * 1e6:.2f} us per (triple or bit) + "
          f"{coefficients['s_per_round'] * 1e6:.1f} us per round (rms residual {coefficients['rms_residual_s']} s)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
