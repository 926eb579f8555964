"""The `mpc-export` command line (typer + rich). Errors in the user's input print one line, exit 2."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserError, VerificationFailed
from ..fixedpoint import FixedSpec, Protocol

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Export a trained CNN to FANNG-MPC / SCALE-MAMBA and prove it right.")
console = Console(stderr=False, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Export a trained CNN to FANNG-MPC / SCALE-MAMBA and prove it right."""


def _last_build_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "mpc-export" / "last_build"


@app.command()
def build(
    model: Path = typer.Argument(..., help="model file (.pth state_dict)"),
    out: Path = typer.Option(Path("mpc-export-out"), "--out", help="output directory"),
    input: List[Path] = typer.Option([], "--input", help="input image (.png, .npy, .pt), up to 10; one execution each"),
    frac_bits: int = typer.Option(12, "--frac-bits", help="F: fractional bits (scale 2^F)"),
    total_bits: int = typer.Option(41, "--total-bits", help="K: total bits of sfix"),
    reading_precision: int = typer.Option(12, "--reading-precision", help="R: the runtime's fixed_point_reading_precision"),
    number_format: str = typer.Option("decimal", "--number-format", help="decimal (needs F == R) or integer"),
    truncation: str = typer.Option("exact", "--truncation", help="exact (the secure run equals the reference bit for bit) or probabilistic (TruncPr: cheaper, within a bound)"),
    convolution: str = typer.Option("winograd", "--convolution", help="winograd (F(2x2,3x3) for 3x3 stride-1 convolutions: 2.25x fewer products, same output) or direct"),
    channel_map: Optional[Path] = typer.Option(None, "--channel-map", help="channel map TOML (default: the seed table)"),
    force: bool = typer.Option(False, "--force", help="replace an existing output directory"),
    debug: bool = typer.Option(False, "--debug", help="make the program print every layer's output (reveals them!)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
    mean: Optional[str] = typer.Option(None, "--mean", help="per-channel mean, e.g. 0.485,0.456,0.406 (default: the architecture's)"),
    std: Optional[str] = typer.Option(None, "--std", help="per-channel std, e.g. 0.229,0.224,0.225"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="load a fully pickled nn.Module (runs its code: only for files you trust)"),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="load a TorchScript file (runs its TorchScript code: only for files you trust)"),
):
    """Turn MODEL into parameter files, input files, the MAMBA program and IO answers."""
    from rich.progress import Progress

    from .build import BuildOptions, build as run_build

    opts = BuildOptions(model=model, out=out, inputs=list(input), number_format=number_format, channel_map=channel_map,
                        force=force, debug=debug, mean=_floats(mean, "--mean"), std=_floats(std, "--std"), trust_pickle=trust_pickle,
                        trust_torchscript=trust_torchscript,
                        fx=FixedSpec(frac_bits=frac_bits, total_bits=total_bits, reading_precision=reading_precision,
                                     protocol=Protocol(truncation=truncation, convolution=convolution)))
    if as_json:
        manifest = run_build(opts)
    else:
        with Progress(console=err_console, transient=True) as progress:
            task = progress.add_task("writing parameter files", total=None)
            manifest = run_build(opts, progress=lambda name: progress.update(task, description=f"wrote {name}"))
    _remember(out)
    summary = _summary(manifest)
    if as_json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)


def _floats(text: Optional[str], flag: str):
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def _build_directory(directory: Optional[Path]) -> Path:
    """The given build directory, or the last build's --out."""
    if directory is not None:
        return directory
    last = _last_build_file()
    if not last.is_file():
        raise UserError("no directory given and no previous build recorded; pass the build's --out directory")
    return Path(last.read_text().strip())


def _remember(out: Path) -> None:
    try:
        path = _last_build_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(out.resolve()))
    except OSError:
        pass


def _summary(m: dict) -> dict:
    files = m["files"]
    return {
        "out": m["out"],
        "model": m["model"],
        "fixed_point": m["fixed_point"],
        "layers": m["layers"],
        "tensors": [{k: f[k] for k in ("tensor", "channel", "path", "count", "bytes")} for f in files if f["role"] == "parameter"],
        "packed": any(len(f["tensors"]) > 1 for f in files if f["role"] == "parameter"),
        "sparsity": [{"node": t["node"], "tensor": t["tensor"], "zero_fraction": t["zero_fraction"]} for t in m["budget"]["tensors"] if t["tensor"] == "weight"],
        "headroom": m["budget"]["stages"],
        "executions": m["executions"],
        "files": len(files) + 1,
        "bytes": sum(f["bytes"] for f in files),
        "cost": m["cost"]["totals"],
        "protocol": m["protocol"],
        "disclosure": m["disclosure"],
        "build_seconds": m["build_seconds"],
        "program": m["program"]["path"],
    }


def _print_summary(s: dict) -> None:
    model = s["model"]
    console.print(f"[bold]{model['description']}[/]: {model['parameters']:,} parameters, {model['macs'] / 1e9:.3f} GMAC, "
                  f"{len(s['layers']) - 1} layers; F={s['fixed_point']['frac_bits']} K={s['fixed_point']['total_bits']} "
                  f"R={s['fixed_point']['reading_precision']} ({s['fixed_point']['number_format']})")
    table = Table(title="parameter tensors and channels")
    for col in ("tensor", "channel", "values", "file"):
        table.add_column(col)
    for t in s["tensors"]:
        table.add_row(t["tensor"], str(t["channel"]), f"{t['count']:,}", t["path"])
    console.print(table)
    head = Table(title="bit budget: headroom in bits (worst case from the weights | on the inputs being built)")
    for col in ("layer", "stage", "limit", "worst case", "headroom", "calibrated", "headroom "):
        head.add_column(col)
    for h in s["headroom"]:
        worst = h["worst_case_headroom_bits"]
        style = "red" if worst < 0 else ""
        head.add_row(h["node"], h["stage"], f"2^{h['limit_bits']}", f"2^{h['worst_case_bits']}", f"[{style}]{worst}[/]" if style else str(worst),
                     "-" if h["calibrated_bits"] is None else f"2^{h['calibrated_bits']}", "-" if h["calibrated_headroom_bits"] is None else str(h["calibrated_headroom_bits"]))
    console.print(head)
    broken = [h for h in s["headroom"] if h["worst_case_headroom_bits"] < 0]
    if broken:
        console.print(f"[yellow]note:[/] the worst-case bound exceeds its budget at {len(broken)} stage(s) (first: "
                      f"{broken[0]['node']} {broken[0]['stage']}); the inputs built fit. `mpc-export verify --dataset` "
                      "checks every intermediate on real data.")
    for e in s["executions"]:
        console.print(f"execution {e['index']}: channel {e['channel']} <- {e['source']}; reference predicts class {e['predicted_class']}")
    c = s["cost"]
    console.print(f"program {s['program']}: {s['protocol']['truncation']} truncation, {s['protocol']['convolution']} "
                  f"convolutions; {c['multiplications']:,} secret "
                  f"multiplications, {c['truncations']:,} truncations, {c['comparisons']:,} comparisons; needs "
                  f"{c['triples']:,} triples, {c['bits']:,} random bits, {c['rounds']:,} rounds")
    console.print(s["disclosure"], highlight=False)
    console.print(f"wrote {s['files']} files, {s['bytes']:,} bytes to {s['out']} in {s['build_seconds']} s")


@app.command()
def verify(
    directory: Optional[Path] = typer.Argument(None, help="directory written by build (default: the last build's --out)"),
    input: List[Path] = typer.Option([], "--input", help="extra input image(s) to check"),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="data set .npz (x uint8 NHWC, y labels)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="use the first N images of the data set"),
    model: Optional[Path] = typer.Option(None, "--model", help="the original model (default: from manifest.json)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the report as JSON to this file"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="write a PNG of per-layer error vs bound"),
    mpc_log: Optional[Path] = typer.Option(None, "--mpc-log", help="log of a real run: check its logits against the reference"),
    no_onnx: bool = typer.Option(False, "--no-onnx", help="skip the onnxruntime cross-check"),
    min_agreement: float = typer.Option(99.5, "--min-agreement", help="fail below this argmax agreement (percent)"),
    simulate_mpc: int = typer.Option(20, "--simulate-mpc", help="runs with TruncPr's probabilistic rounding simulated (not with --dataset; 0: off)"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="the model is a pickled nn.Module you trust (loading runs its code); never taken from manifest.json"),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="the model is a TorchScript file you trust (loading runs its code)"),
):
    """Prove a build right: integrity, bit-exact reference from the files, per-layer float cross-checks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .verify import VerifyOptions, verify as run_verify

    directory = _build_directory(directory)
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    for flag, target in (("--json", json_path), ("--plot", plot)):  # before the work, not after it
        if target is not None and not target.parent.is_dir():
            raise UserError(f"{flag} {target}: folder {target.parent} does not exist")
    opts = VerifyOptions(directory=directory, inputs=list(input), dataset=dataset, limit=limit, model=model,
                         mpc_log=mpc_log, onnx=not no_onnx, min_agreement=min_agreement / 100.0, simulate_mpc=max(0, simulate_mpc),
                         trust_pickle=trust_pickle, trust_torchscript=trust_torchscript)
    with Progress(TextColumn("reference"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task("images", total=None)
        report = run_verify(opts, progress=lambda done, total: progress.update(task, completed=done, total=total))
    if json_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    if plot:
        _plot(report, plot)
    _print_report(report)
    if not report["ok"]:
        bad = [r["name"] for r in report["layers"] if not r["ok"]]
        if bad:
            raise VerificationFailed(f"verification failed: {', '.join(bad)} outside the derived tolerance")
        if not report["agreement_ok"]:
            raise VerificationFailed(f"verification failed: argmax agreement {report['agreement'] * 100:.2f} % is below "
                                     f"--min-agreement {report['min_agreement'] * 100:.2f} %")
        m = report.get("mpc", {})
        what = "differs from the reference (exact truncation: they must be equal)" if report.get("truncation") == "exact" \
            else "deviates from the reference beyond the bound"
        raise VerificationFailed(f"verification failed: the MPC log {what}; first at {m.get('first_difference')}")


@app.command()
def run(
    directory: Path = typer.Argument(..., help="directory written by build"),
    runtime: Path = typer.Option(..., "--runtime", help="FANNG-MPC installation (PlayerBinary.x, Data/, Cert-Store/)"),
    compiler: Optional[Path] = typer.Option(None, "--compiler", help="MAMBA compiler directory (compile-mamba.py); default: the runtime's"),
    parties: int = typer.Option(3, "--parties", help="number of players (the runtime's set-up: 3)"),
    execution: Optional[int] = typer.Option(None, "--execution", help="compare only this execution's logits"),
    timeout: float = typer.Option(600.0, "--timeout", help="wall-clock limit for the players, seconds"),
    log: Optional[Path] = typer.Option(None, "--log", help="save player 0's output here (default DIR/run-logs/P0.log)"),
    keep: bool = typer.Option(False, "--keep", help="keep the temporary run roots"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="the model is a pickled nn.Module you trust (loading runs its code)"),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="the model is a TorchScript file you trust (loading runs its code)"),
):
    """Run the generated program for real (3 players on 127.0.0.1) and check its logits against the reference."""
    from ..run.runtime import RunOptions, run as run_program
    from .verify import VerifyOptions, verify as run_verify

    result = run_program(RunOptions(directory=directory, runtime=runtime, compiler=compiler, parties=parties,
                                    execution=execution, timeout=timeout, log=log, keep=keep,
                                    trust_pickle=trust_pickle, trust_torchscript=trust_torchscript),
                         progress=lambda msg: err_console.print(msg))
    report = run_verify(VerifyOptions(directory=directory, mpc_log=result.log_path, onnx=False, min_agreement=0.0,
                                      trust_pickle=trust_pickle, trust_torchscript=trust_torchscript))
    m = report["mpc"]
    console.print(f"MPC run: {result.wall_s:.1f} s for the players (compile {result.compile_s:.1f} s), peak "
                  f"{', '.join(f'{p} MB' for p in result.peak_mb)}; log {result.log_path}")
    console.print("party isolation: " + ", ".join(f"player {p}'s run root held {n} file(s) of the build's data folder"
                                                   for p, n in enumerate(result.data_files_per_player)))
    if result.root is not None:
        console.print(f"kept run roots: {result.root}")
    reference = report["fixed_logits"]
    table = Table(title="logits: MPC vs reference (raw integers, units of 2^-F)")
    for col in ("execution", "class", "MPC", "reference", "|diff|"):
        table.add_column(col, justify="right")
    for e, values in sorted(result.logits.items()):
        for j, v in sorted(values.items()):
            table.add_row(str(e), str(j), str(v), str(reference[e][j]), str(abs(v - reference[e][j])))
    console.print(table)
    same_class = all(max(values, key=values.get) == max(range(len(reference[e])), key=reference[e].__getitem__)
                     for e, values in result.logits.items())
    for layer in m.get("layers", []):
        console.print(f"layer {layer['name']}: {layer['values']} values, max |MPC - reference| = {layer['max_ulp_err']} ulp, "
                      f"bound {layer['bound_ulp']} ulp")
    exact = report.get("truncation") == "exact"
    console.print(f"max |MPC - reference| = {m['max_ulp_err']} ulp, bound {m['bound_ulp']} ulp"
                  f"{' (exact truncation: equal required)' if exact else ''}; predicted class {'matches' if same_class else 'DIFFERS'}")
    if not (m["ok"] and same_class):
        exact = report.get("truncation") == "exact"
        raise VerificationFailed(f"the MPC run {'differs from the reference (exact truncation: they must be equal)' if exact else 'deviates from the reference beyond the derived bound'}"
                                 f"{' or changes a prediction' if not same_class else ''}; first at {m.get('first_difference')}")


@app.command()
def cost(
    directory: Optional[Path] = typer.Argument(None, help="directory written by build (default: the last build's --out)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON object"),
):
    """Per-layer secret multiplications, truncations, comparisons, values per channel, rounds (estimate)."""
    from ..verify.integrity import read_manifest

    directory = _build_directory(directory)
    manifest = read_manifest(directory)
    report = {"cost": manifest["cost"], "input_values_per_channel": manifest.get("input_values_per_channel", {})}
    if as_json:
        print(json.dumps(report))
        return
    protocol = manifest.get("protocol", {})
    table = Table(title=f"cost of {manifest['program']['path']} per execution ({protocol.get('truncation', '?')} truncation)")
    for col in ("layer", "products", "truncations", "comparisons", "triples", "random bits", "rounds", "zero w."):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for row in manifest["cost"]["layers"]:
        zeros = row["weight_zero_fraction"]
        table.add_row(row["node"], f"{row['multiplications']:,}", f"{row['truncations']:,}", f"{row['comparisons']:,}",
                      f"{row['triples']:,}", f"{row['bits']:,}", f"{row['rounds']:,}", "" if zeros is None else f"{zeros * 100:.1f} %")
    t = manifest["cost"]["totals"]
    table.add_row("total", f"{t['multiplications']:,}", f"{t['truncations']:,}", f"{t['comparisons']:,}",
                  f"{t['triples']:,}", f"{t['bits']:,}", f"{t['rounds']:,}", "")
    console.print(table)
    console.print("triples and random bits: the preprocessing the MAMBA compiler's \"Program requires\" line counts; "
                  "rounds: each run-time loop iteration's protocol calls in sequence")
    values = report["input_values_per_channel"]
    console.print("values input per channel: " + ", ".join(f"{ch}: {n:,}" for ch, n in values.items()))
    sp = manifest["cost"]["sparsity"]
    console.print(f"a public sparsity pattern would save {sp['public_pattern_would_save_multiplications']:,} multiplications; "
                  f"{sp['note']}")


def _print_report(r: dict) -> None:
    for check in r.get("integrity", []):
        console.print(f"integrity: {check}", highlight=False)
    table = Table(title=f"per-layer check, {r['images']} image(s), units of 2^-{r['frac_bits']} (ulp); "
                        f"{r.get('truncation', '?')} truncation")
    simulated = "simulated_mpc_ulp" in r["layers"][0]
    for col in ("layer", "torch module", "max |ref - torch|", "mean", "tolerance", "max |ref - onnx|", "MPC bound",
                *(["simulated MPC"] if simulated else []), "ok"):
        table.add_column(col)
    for row in r["layers"]:
        table.add_row(row["name"], row["torch_module"], f"{row['max_ulp_err']:.1f}", f"{row['mean_abs_err'] * 2 ** r['frac_bits']:.2f}",
                      f"{row['tolerance_ulp']:.1f}", "-" if row["onnx_max_abs_err"] is None else f"{row['onnx_max_abs_err'] * 2 ** r['frac_bits']:.1f}", str(row["bound_ulp"]),
                      *([str(row["simulated_mpc_ulp"])] if simulated else []), "[green]ok[/]" if row["ok"] else "[red]FAIL[/]")
    console.print(table)
    tight = min(r["overflow"], key=lambda o: o["headroom_bits"])
    console.print(f"tightest intermediate: {tight['node']} {tight['stage']} at 2^{tight['peak_bits']} of 2^{tight['limit_bits']} "
                  f"({tight['headroom_bits']} bits headroom)")
    line = f"argmax agreement fixed vs float: {r['agreement'] * 100:.2f} % of {r['images']}; worst logit error {r['worst_logit_err']:.4f}"
    if r.get("float_acc") is not None:
        line += f"; accuracy float {r['float_acc'] * 100:.2f} %, fixed point {r['fixed_acc'] * 100:.2f} %"
    console.print(line)
    if "mpc" in r:
        m = r["mpc"]
        for layer in m.get("layers", []):
            console.print(f"MPC log {layer['name']}: {layer['values']} values, max |MPC - reference| = {layer['max_ulp_err']} ulp, "
                          f"bound {layer['bound_ulp']} ulp: {'ok' if layer['ok'] else 'FAIL'}")
        console.print(f"MPC log: max |MPC - reference| = {m['max_ulp_err']} ulp, bound {m['bound_ulp']} ulp: {'ok' if m['ok'] else 'FAIL'}")
    console.print(("[green]verified[/]" if r["ok"] else "[red]verification FAILED[/]") + f" in {r['seconds']} s")


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["layers"]
    names = [r["name"] for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.semilogy(xs, [max(r["max_ulp_err"], 1e-2) for r in rows], "o-", label="max |reference - torch| (ulp)")
    ax.semilogy(xs, [r["tolerance_ulp"] for r in rows], "s--", label="derived tolerance (ulp)")
    if report.get("truncation") == "exact":  # the bound is 0: drawn on the floor, and said so
        ax.semilogy(xs, [1e-2] * len(rows), "^:", label="|MPC - reference| = 0 (exact truncation; drawn at 1e-2)")
    else:
        ax.semilogy(xs, [max(r["bound_ulp"], 1e-2) for r in rows], "^:", label="bound |MPC - reference| (ulp; 0 drawn at 1e-2)")
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set_ylabel(f"units of 2^-{report['frac_bits']}")
    ax.set_title(f"mpc-export verify: {report['images']} image(s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


TRACEBACK_VARIABLE = "MPC_EXPORT_TRACEBACK"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every context manager (a staged build, a run's
    players) cleans up on the way out."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _error(text: str) -> None:
    """One line on stderr, printed as text (a message may hold brackets or colons: no markup, no emoji)."""
    err_console.print("error: " + text, markup=False, emoji=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Exit codes: 0 ok, 1 verification failed or an unexpected error, 2 bad input or usage, 130 Ctrl-C,
    143 SIGTERM. An unexpected exception prints one line; MPC_EXPORT_TRACEBACK=1 shows the traceback."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = app(standalone_mode=False)  # typer turns Ctrl-C into a returned 130 in this mode
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except (UserError, VerificationFailed) as exc:
        _error(str(exc))
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        _error("interrupted; nothing half-written is left (a build in progress was discarded)")
        sys.exit(130)
    except Terminated:
        _error("terminated; nothing half-written is left (a build in progress was discarded)")
        sys.exit(143)
    except Exception as exc:  # typer's (vendored click) usage errors carry show() and exit_code
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Exit" and hasattr(exc, "exit_code"):
            sys.exit(exc.exit_code)
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        _error(f"internal error {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''} "
               f"(set {TRACEBACK_VARIABLE}=1 for the traceback)")
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
