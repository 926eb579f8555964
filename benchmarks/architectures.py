"""Each seed architecture: build time, files and bytes written, cost totals, compile figures, and
fixed-point vs float accuracy on the CIFAR-10 test set (all 10,000 images by default).

    python benchmarks/architectures.py [--images 10000] [--formats state_dict,onnx]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch

from mpc_export.pipeline.build import BuildOptions, build
from mpc_export.pipeline.verify import VerifyOptions, verify
from mpc_export.load.torch_models import torch_module

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = {
    "pruned_resnet": ROOT / "examples" / "pruned_resnet_cifar10.pth",
    "resnet20": SHARED / "fixtures" / "resnet20_cifar10.pth",
    "custresnet": SHARED / "fixtures" / "custresnet_cifar10.pth",
}


def compile_figures(program: Path) -> dict:
    compiler = SHARED / "tools" / "mamba-compile"
    if not compiler.exists():
        return {}
    proc = subprocess.run(["/usr/bin/time", "-f", "%M %e", "-o", "/tmp/mpc_export_time", str(compiler), str(program)],
                          capture_output=True, text=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    rss, wall = Path("/tmp/mpc_export_time").read_text().split()[-2:]
    return {"instructions": summary["instructions"], "compile_s": float(wall), "compile_mb": int(rss) // 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--formats", default="state_dict,onnx")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    rows = []
    for arch in args.models.split(","):
        for fmt in args.formats.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                model = MODELS[arch]
                mean = std = None
                if fmt == "onnx":
                    module = torch_module(arch, model).float()
                    model = Path(tmp) / f"{arch}.onnx"
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        torch.onnx.export(module, torch.zeros(1, 3, 32, 32), str(model), dynamo=False)
                    if arch != "pruned_resnet":
                        mean, std = {"resnet20": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                                     "custresnet": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}[arch]
                out = Path(tmp) / "out"
                start = time.perf_counter()
                manifest = build(BuildOptions(model=model, out=out, mean=mean, std=std))
                build_s = time.perf_counter() - start
                files = manifest["files"]
                comp = compile_figures(out / "program" / manifest["program"]["name"])
                start = time.perf_counter()
                report = verify(VerifyOptions(directory=out, dataset=SHARED / "fixtures" / "cifar10_test.npz", limit=args.images))
                rows.append({
                    "arch": arch, "format": fmt, "build_s": round(build_s, 1), "files": len(files) + 1,
                    "bytes": sum(f["bytes"] for f in files), **manifest["cost"]["totals"], **comp,
                    "images": report["images"], "float_acc": report["float_acc"], "fixed_acc": report["fixed_acc"],
                    "agreement": report["agreement"], "worst_logit_err": report["worst_logit_err"], "verify_ok": report["ok"],
                    "verify_s": round(time.perf_counter() - start, 1),
                })
                print(json.dumps(rows[-1]), flush=True)
    print("| architecture | input | verify | images | float acc | fixed acc | agreement | build s | files | MB | mults | truncs | comparisons | instructions | compile s / MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['arch']} | {r['format']} | {'ok' if r['verify_ok'] else 'FAIL'} | {r['images']} | {r['float_acc'] * 100:.2f} % | "
              f"{r['fixed_acc'] * 100:.2f} % | {r['agreement'] * 100:.2f} % | {r['build_s']} | {r['files']} | {r['bytes'] / 1e6:.1f} | "
              f"{r['multiplications']:,} | {r['truncations']:,} | {r['comparisons']:,} | {r.get('instructions', '-')} | "
              f"{r.get('compile_s', '-')} / {r.get('compile_mb', '-')} |")


if __name__ == "__main__":
    main()
