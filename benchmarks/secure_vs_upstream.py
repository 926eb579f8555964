"""The same program on both FANNG-MPC runtime builds, back to back: the secure build (test switches off) and
FANNG's config.h as shipped (zero Beaver triples: every product opens its operands). What security costs.

    FANNG_RUNTIME=<secure dir> FANNG_RUNTIME_UPSTREAM=<upstream dir> \
        python benchmarks/secure_vs_upstream.py [--channels 32] [--repeats 2] [--out benchmarks/results/secure_vs_upstream.json]

The model is runtime_scaling.py's (two conv blocks with c channels + linear on 16x16, exact truncation,
Winograd). The program's runtime check is cut out of this copy only (the upstream build would stop at
it, which is the point of the check); each run goes through ../shared/tools/fanng-runtime/run-mpc, which
compiles the program and starts the 3 players on 127.0.0.1. Runs alternate (secure, upstream, secure, ...)
so that load drifts hit both; the ratio is of the medians. One run at a time: each takes ~12 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from mpc_export.pipeline.build import BuildOptions, build
from mpc_export.backends.mamba import runtime_check
from runtime_scaling import model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CHECK = re.compile(r"^RUNTIME_CHECK_TRIPLES = .*?^print_ln\(\"RUNTIME CHECK passed\"\)\n", re.M | re.S)


def without_check(program: str) -> str:
    stripped, count = CHECK.subn("", program)
    if count != 1:
        raise SystemExit("the program's runtime check was not found (the template changed?)")
    return stripped


def run_once(runtime: str, program_dir: Path, data: Path, answers: Path, timeout: int) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([str(SHARED / "tools" / "fanng-runtime" / "run-mpc"), str(program_dir), "--data", str(data),
                           "--answers", str(answers), "--timeout", str(timeout)],
                          capture_output=True, text=True, env=dict(os.environ, FANNG_RUNTIME=runtime))
    wall = time.perf_counter() - started
    logits = [int(v) for v in re.findall(r"LOGIT 0 \d+ (-?\d+)", proc.stdout)]
    return {"exit": proc.returncode, "wall_s": round(wall, 1), "logits": logits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "secure_vs_upstream.json")
    args = parser.parse_args()
    runtimes = {"secure": os.environ["FANNG_RUNTIME"], "upstream": os.environ["FANNG_RUNTIME_UPSTREAM"]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = tmp / "image.npy"
        np.save(image, np.random.default_rng(0).random((3, 16, 16)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model(args.channels), torch.zeros(1, 3, 16, 16), str(tmp / "cnn.onnx"), dynamo=False)
        manifest = build(BuildOptions(model=tmp / "cnn.onnx", out=tmp / "out", inputs=[image]))
        name = manifest["program"]["name"]
        program_dir = tmp / "program" / name
        program_dir.mkdir(parents=True)
        (program_dir / f"{name}.mpc").write_text(without_check((tmp / "out" / manifest["program"]["path"]).read_text()))
        data = tmp / "data"
        shutil.copytree(tmp / "out" / manifest["data_folder"], data / manifest["data_folder"])
        reference = manifest["executions"][0]["logits"]
        runs = []
        for repeat in range(args.repeats):
            for build_name, runtime in runtimes.items():
                result = run_once(runtime, program_dir, data, tmp / "out" / "io_answers.txt", args.timeout)
                result.update(runtime=build_name, repeat=repeat, equal_to_reference=result["logits"] == reference)
                runs.append(result)
                print(json.dumps(result), flush=True)
    medians = {b: statistics.median(r["wall_s"] for r in runs if r["runtime"] == b) for b in runtimes}
    record = {"program": f"runtime_scaling model c={args.channels}, exact, Winograd, runtime check cut out",
              "triples": manifest["cost"]["totals"]["triples"] - runtime_check.TRIPLES,
              "bits": manifest["cost"]["totals"]["bits"] - runtime_check.RANDOM_BITS,
              "runs": runs, "median_wall_s": medians,
              "secure_over_upstream": round(medians["secure"] / medians["upstream"], 3)}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("median_wall_s", "secure_over_upstream")}))


if __name__ == "__main__":
    main()
