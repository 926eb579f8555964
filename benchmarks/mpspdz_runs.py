"""Real 3-party MP-SPDZ runs of the fixture models through `mpc-export run` (one image each), next to
FANNG-MPC: the seed's measured secure run (benchmarks/results/seed_real_run.json) and, for the others,
FANNG's time as its cost report predicts it (the fit of benchmarks/results/runtime_fit.json; not run).

    python benchmarks/mpspdz_runs.py [--protocols ring,sy-rep-ring] [--models seed,resnet20,custresnet,sparse_resnet18]
        [--runtime DIR] [--out benchmarks/results/mpspdz_runs.json]

Each model is built with --backend mp-spdz per protocol and run alone (never two runs at once); the logits
must equal the fixed-point reference (verify --mpc-log). Writes the JSON and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS = {
    "seed": ("pruned_resnet_cifar10 (seed)", ROOT / "examples" / "pruned_resnet_cifar10.pth"),
    "resnet20": ("ResNet-20 (cluster pruning)", SHARED / "fixtures" / "resnet20_cifar10.pth"),
    "custresnet": ("custResNet", SHARED / "fixtures" / "custresnet_cifar10.pth"),
    "sparse_resnet18": ("ResNet-18, 90 % of weights zero (benchmarks/sparse_resnet18.py)", None),
}


def mp_spdz_runtime(given: str | None) -> str:
    if given:
        return given
    done = subprocess.run([str(SHARED / "tools" / "mp-spdz" / "build")], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def model_path(key: str, scratch: Path) -> Path:
    if MODELS[key][1] is not None:
        return MODELS[key][1]
    from sparse_resnet18 import sparse_resnet18
    import torch

    path = scratch / "sparse_resnet18.pth"
    model, _ = sparse_resnet18(0.9, 512)
    torch.save(model.state_dict(), path)
    return path


def fanng_prediction(model: Path, scratch: Path, extra: list[str]) -> float:
    """FANNG-MPC's players' time for one image, as the default build's cost report predicts it."""
    from mpc_export.backends.mamba.runtime import estimate_seconds
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.verify.integrity import read_manifest

    out = scratch / "fanng"
    build(BuildOptions(model=model, out=out, inputs=[SHARED / "fixtures" / "image_1.pt"], force=True, **_options(extra)))
    return round(estimate_seconds(read_manifest(out)), 1)


def _options(extra: list[str]) -> dict:
    return {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)} if "--mean" in extra else {}


def one_run(model: Path, protocol: str, runtime: str, scratch: Path, extra: list[str]) -> dict:
    from mpc_export.backends.mpspdz.runtime import MpSpdzRunOptions, run
    from mpc_export.fixedpoint import FixedSpec, Protocol
    from mpc_export.pipeline.build import BuildOptions, build
    from mpc_export.pipeline.verify import VerifyOptions, verify

    out = scratch / f"mp-{protocol}"
    started = time.perf_counter()
    build(BuildOptions(model=model, out=out, inputs=[SHARED / "fixtures" / "image_1.pt"], force=True, backend="mp-spdz",
                       protocol=protocol, fx=FixedSpec(protocol=Protocol(convolution="direct")), **_options(extra)))
    build_s = time.perf_counter() - started
    result = run(MpSpdzRunOptions(directory=out, runtime=Path(runtime)), progress=lambda _: None)
    report = verify(VerifyOptions(directory=out, mpc_log=result.log_path, onnx=False, min_agreement=0.0))
    return {"protocol": protocol, "build_s": round(build_s, 1), "compile_s": round(result.compile_s, 1),
            "parties_wall_s": round(result.wall_s, 2), "mp_spdz_time_s": result.time_s,
            "global_data_mb": result.global_data_mb,
            "per_party": [{"party": p.party, "peak_mb": p.peak_mb, "data_sent_mb": p.data_sent_mb, "rounds": p.rounds}
                          for p in result.parties],
            "compiler": result.compiler, "logits": result.logits[0], "reference_logits": report["fixed_logits"][0],
            "max_ulp_err": report["mpc"]["max_ulp_err"], "logits_equal": report["mpc"]["ok"] and report["mpc"]["max_ulp_err"] == 0}


def table(results: list[dict]) -> str:
    lines = ["| model | runtime, protocol | security | time (s) | data sent, all parties | peak memory per party | logits equal |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for run in r["runs"]:
            lines.append(f"| {r['model']} | MP-SPDZ `{run['protocol']}` | {run['security']} | {run['mp_spdz_time_s']:.1f} "
                         f"(parties' wall {run['parties_wall_s']:.1f}) | {run['global_data_mb']:,.0f} MB | "
                         f"{max(p['peak_mb'] for p in run['per_party']):,} MB | {'yes' if run['logits_equal'] else 'NO'} |")
        lines.append(f"| {r['model']} | FANNG-MPC | active, abort | {r['fanng']} | | {r.get('fanng_peak', '')} | "
                     f"{r.get('fanng_logits', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from mpc_export.backends.mpspdz import PROTOCOLS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default="ring,sy-rep-ring")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runtime")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mpspdz_runs.json")
    args = parser.parse_args()
    runtime = mp_spdz_runtime(args.runtime)
    seed_fanng = json.loads((ROOT / "benchmarks" / "results" / "seed_real_run.json").read_text())
    results = []
    for key in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="mpspdz-bench-") as scratch:
            scratch = Path(scratch)
            model = model_path(key, scratch)
            extra = ["--mean"] if key == "sparse_resnet18" else []
            entry = {"model": MODELS[key][0], "key": key, "runs": []}
            if key == "seed":
                entry.update(fanng=f"{seed_fanng['players_s']:,.0f} (measured, secure runtime)",
                             fanng_peak=f"{max(seed_fanng['peak_mb_per_player']):,} MB",
                             fanng_logits="yes" if seed_fanng["max_ulp_err"] == 0 else "NO")
            else:
                entry["fanng"] = f"~{fanng_prediction(model, scratch, extra):,.0f} (cost-report prediction, not run)"
            for protocol in args.protocols.split(","):
                print(f"{key}: {protocol} ...", flush=True)
                run = one_run(model, protocol, runtime, scratch, extra)
                run["security"] = PROTOCOLS[protocol].security
                print(f"  {run['mp_spdz_time_s']} s, {run['global_data_mb']} MB, logits equal: {run['logits_equal']}", flush=True)
                entry["runs"].append(run)
            results.append(entry)
    record = {"machine": f"{platform.node()} ({platform.processor() or platform.machine()}), 3 parties on 127.0.0.1",
              "image": "../shared/fixtures/image_1.pt", "runtime": runtime, "results": results}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
