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

from ..errors import UserError, VerificationFailed
from ..fixedpoint import FixedSpec, Protocol
from . import show
from .memory import keep_freed_memory

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 80},
                  help="Export a trained CNN to FANNG-MPC / SCALE-MAMBA and prove it right.")
console = Console(stderr=False)  # the terminal's width, or $COLUMNS, else 80: nothing is laid out wider
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"mpc-export {version('mpc-export')}")
        except PackageNotFoundError:  # running from a source tree that was never installed
            print("mpc-export (not installed)")
        raise typer.Exit()


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                           help="print the version and exit")) -> None:
    """Export a trained CNN to FANNG-MPC / SCALE-MAMBA and prove it right.

    Start with: mpc-export build MODEL --out DIR, then mpc-export verify DIR."""


def _last_build_file() -> Path:
    """Where the last build's --out is remembered: one file per working directory (two projects, or two
    terminals in two folders, do not take each other's build)."""
    import hashlib

    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    key = hashlib.sha256(str(Path.cwd().resolve()).encode()).hexdigest()[:24]
    return base / "mpc-export" / "last_build" / key


@app.command(short_help="model file -> parameter files, program, IO answers")
def build(
    model: Path = typer.Argument(..., metavar="MODEL", help="model file (.pth state_dict)"),
    out: Path = typer.Option(Path("mpc-export-out"), "--out", metavar="DIR", help="output directory"),
    input: List[Path] = typer.Option([], "--input", metavar="IMAGE", help="input image (.png, .npy, .pt), up to 10; one execution each"),
    frac_bits: int = typer.Option(12, "--frac-bits", metavar="F", help="F: fractional bits (scale 2^F)"),
    total_bits: int = typer.Option(41, "--total-bits", metavar="K", help="K: total bits of sfix"),
    reading_precision: int = typer.Option(12, "--reading-precision", metavar="R", help="R: the runtime's fixed_point_reading_precision"),
    number_format: str = typer.Option("decimal", "--number-format", metavar="decimal|integer", help="decimal (needs F == R) or integer"),
    truncation: str = typer.Option("exact", "--truncation", metavar="exact|probabilistic", help="exact (the secure run equals the reference bit for bit) or probabilistic (TruncPr: cheaper, within a bound)"),
    convolution: Optional[str] = typer.Option(None, "--convolution", metavar="winograd|direct", help="winograd (F(2x2,3x3) for 3x3 stride-1 convolutions: 2.25x fewer products, same output; the FANNG default) or direct (dot products; the MP-SPDZ default)"),
    weights: str = typer.Option("private", "--weights", metavar="private|public", help="public: every player reads the parameter files as public values (the model is revealed, the input stays secret; products with a weight are local; --convolution direct is then a little cheaper)"),
    sparsity: str = typer.Option("private", "--sparsity", metavar="private|public", help="public: the positions of the non-zero weights are public (the pruning pattern is revealed, the values stay secret) and products by a zero weight are skipped"),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", metavar="NPZ", help="set each comparison's width from the peaks on these images (x uint8 NHWC, y labels) plus --margin-bits; verify --dataset on other images then fails on any value beyond a calibrated width"),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", help="calibrate on the first N images"),
    margin_bits: int = typer.Option(4, "--margin-bits", metavar="BITS", help="bits of headroom above each calibrated peak"),
    channel_map: Optional[Path] = typer.Option(None, "--channel-map", metavar="TOML", help="channel map TOML (default: the seed table)"),
    force: bool = typer.Option(False, "--force", help="replace an existing output directory"),
    debug: bool = typer.Option(False, "--debug", help="make the program print every layer's output (reveals them!)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also print every tensor, channel and bit budget"),
    mean: Optional[str] = typer.Option(None, "--mean", metavar="M,M,M", help="per-channel mean, e.g. 0.485,0.456,0.406 (default: the architecture's)"),
    std: Optional[str] = typer.Option(None, "--std", metavar="S,S,S", help="per-channel std, e.g. 0.229,0.224,0.225"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="load a fully pickled nn.Module (runs its code: only for files you trust)"),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="load a TorchScript file (runs its TorchScript code: only for files you trust)"),
    backend: str = typer.Option("fanng", "--backend", metavar="fanng|mp-spdz", help="the runtime: fanng (FANNG-MPC / SCALE-MAMBA, a MAMBA program) or mp-spdz (an MP-SPDZ program, 3-party honest majority)"),
    protocol: Optional[str] = typer.Option(None, "--protocol", metavar="NAME", help="with --backend mp-spdz: sy-rep-ring (default; malicious, abort), ring (semi-honest), sy-rep-field, mal-shamir, rep-field, shamir"),
):
    """Turn MODEL into parameter files, input files, the program (MAMBA, or MP-SPDZ with --backend mp-spdz)."""
    from rich.progress import Progress

    from ..backends import backend_named
    from ..pipeline.build import BuildOptions, build as run_build

    if convolution is None:
        convolution = backend_named(backend).default_convolution
    if calibrate is not None:
        keep_freed_memory()  # batch after batch reuses the same pages
    opts = BuildOptions(model=model, out=out, inputs=list(input), number_format=number_format, channel_map=channel_map,
                        force=force, debug=debug, mean=_floats(mean, "--mean"), std=_floats(std, "--std"), trust_pickle=trust_pickle,
                        trust_torchscript=trust_torchscript, calibrate=calibrate, calibrate_limit=limit, margin_bits=margin_bits,
                        backend=backend, protocol=protocol,
                        fx=FixedSpec(frac_bits=frac_bits, total_bits=total_bits, reading_precision=reading_precision,
                                     protocol=Protocol(truncation=truncation, convolution=convolution, weights=weights,
                                                       sparsity=sparsity)))
    if as_json:
        manifest = run_build(opts)
    else:
        with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
            tasks = []  # made at the first file written: every argument and the model are checked by then

            def wrote(name: str) -> None:
                if not tasks:
                    tasks.append(progress.add_task("writing parameter files", total=None))
                progress.update(tasks[0], description=f"wrote {name}")

            manifest = run_build(opts, progress=wrote)
    _remember(out)
    summary = _summary(manifest)
    if as_json:
        print(json.dumps(summary))
    else:
        show.build_summary(console, summary, verbose)


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
        raise UserError("no directory given and no build made from this working directory; pass the build's --out directory")
    return Path(last.read_text().strip())


def _remember(out: Path) -> None:
    try:
        path = _last_build_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(out.resolve()))
    except OSError:
        pass


def _summary(m: dict) -> dict:
    from ..pipeline.verify import trust_flags

    files = m["files"]
    return {
        "out": m["out"],
        "model": m["model"],
        "classes": int(__import__("math").prod(m["layers"][-1]["shape"])),
        "preprocessing": m["preprocessing"],
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
        "calibration": m.get("calibration"),
        "build_seconds": m["build_seconds"],
        "program": m["program"]["path"],
        "backend": m.get("backend", "fanng"),
        "notices": m.get("notices", []),
        "convolution_modes": m.get("convolution_modes", {}),
        "trust_flags": trust_flags(m["model"]["format"]),
        "mp_spdz": m.get("mp_spdz"),
    }


@app.command(short_help="prove a build right, optionally on a data set")
def verify(
    directory: Optional[Path] = typer.Argument(None, metavar="DIR", help="directory written by build (default: the last build's --out)"),
    input: List[Path] = typer.Option([], "--input", metavar="IMAGE", help="extra input image(s) to check"),
    dataset: Optional[Path] = typer.Option(None, "--dataset", metavar="NPZ", help="data set .npz (x uint8 NHWC, y labels)"),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", help="use the first N images of the data set"),
    model: Optional[Path] = typer.Option(None, "--model", metavar="MODEL", help="the original model (default: from manifest.json)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON object (as build and cost do)"),
    report_path: Optional[Path] = typer.Option(None, "--report", metavar="FILE", help="also write the report as JSON to this file"),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="PNG", help="write a PNG of per-layer error vs bound"),
    mpc_log: Optional[Path] = typer.Option(None, "--mpc-log", metavar="LOG", help="log of a real run: check its logits against the reference"),
    no_onnx: bool = typer.Option(False, "--no-onnx", help="skip the onnxruntime cross-check"),
    onnx_images: int = typer.Option(250, "--onnx-images", metavar="N", help="with --dataset: the first N images (whole batches) also through onnxruntime; PyTorch checks every image"),
    min_agreement: float = typer.Option(99.5, "--min-agreement", metavar="PERCENT", help="fail below this argmax agreement (percent)"),
    preprocessing_check: bool = typer.Option(True, "--preprocessing-check/--no-preprocessing-check", help="with --dataset: fail when the float model scores far better under a common normalization (CIFAR-10's or ImageNet's mean/std, [-1, 1], pixel / 255) than under this build's"),
    simulate_mpc: int = typer.Option(20, "--simulate-mpc", metavar="RUNS", help="runs with TruncPr's probabilistic rounding simulated (not with --dataset; 0: off)"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="the model is a pickled nn.Module you trust (loading runs its code); never taken from manifest.json"),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="the model is a TorchScript file you trust (loading runs its code)"),
):
    """Prove a build right: integrity, bit-exact reference from the files, per-layer float cross-checks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..pipeline.verify import VerifyOptions, verify as run_verify

    directory = _build_directory(directory)
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    if limit is not None and dataset is None:
        raise UserError("--limit goes with --dataset (it takes the data set's first N images)")
    for flag, target in (("--report", report_path), ("--plot", plot)):  # before the work, not after it
        if target is not None and not target.parent.is_dir():
            raise UserError(f"{flag} {target}: folder {target.parent} does not exist")
        if target is not None and target.is_dir():
            raise UserError(f"{flag} {target}: a directory; give the file to write")
    if dataset is not None:
        keep_freed_memory()  # batch after batch reuses the same pages
    opts = VerifyOptions(directory=directory, inputs=list(input), dataset=dataset, limit=limit, model=model,
                         mpc_log=mpc_log, onnx=not no_onnx, onnx_images=max(0, onnx_images), min_agreement=min_agreement / 100.0, simulate_mpc=max(0, simulate_mpc),
                         preprocessing_check=preprocessing_check,
                         trust_pickle=trust_pickle, trust_torchscript=trust_torchscript)
    with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TextColumn("images"), TimeRemainingColumn(),
                  console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        tasks = []  # a bar only for a data set, made when its first batch starts (the checks before it are done)

        def advanced(done: int, total: int) -> None:
            if not tasks:
                tasks.append(progress.add_task("images", total=total))
            progress.update(tasks[0], completed=done, total=total)

        report = run_verify(opts, progress=advanced)
    if report_path:
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        print(json.dumps(report))
    else:
        show.verify_report(console, report)
    if plot:
        show.plot(report, plot)
        if not as_json:
            console.print(f"plot: wrote {plot}", soft_wrap=True, highlight=False, markup=False)
    if not report["ok"]:
        if report.get("preprocessing_problem"):
            raise VerificationFailed(f"verification failed: {report['preprocessing_problem']}")
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


@app.command(short_help="run the program for real with 3 players, check it")
def run(
    directory: Path = typer.Argument(..., metavar="DIR", help="directory written by build"),
    runtime: Path = typer.Option(..., "--runtime", metavar="DIR", help="FANNG-MPC installation (PlayerBinary.x, Data/, Cert-Store/)"),
    compiler: Optional[Path] = typer.Option(None, "--compiler", metavar="DIR", help="MAMBA compiler directory (compile-mamba.py); default: the runtime's"),
    parties: int = typer.Option(3, "--parties", metavar="N", help="number of players (the runtime's set-up: 3)"),
    execution: Optional[int] = typer.Option(None, "--execution", metavar="N", help="compare only this execution's logits"),
    timeout: Optional[float] = typer.Option(None, "--timeout", metavar="SECONDS", help="wall-clock limit for the players, seconds (default: 3x the cost estimate + 2 min, at least 10 min)"),
    keep: bool = typer.Option(False, "--keep", help="keep the temporary run roots"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="the model is a pickled nn.Module you trust (loading runs its code)"),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="the model is a TorchScript file you trust (loading runs its code)"),
    hosts: Optional[str] = typer.Option(None, "--hosts", metavar="H0,H1,H2", help="three hosts: start only this machine's party (--party, --certs)"),
    party: Optional[int] = typer.Option(None, "--party", metavar="P", help="with --hosts: the party this machine plays (0, 1 or 2)"),
    certs_dir: Optional[Path] = typer.Option(None, "--certs", metavar="CERTS", help="with --hosts: the directory mpc-export certs wrote"),
    port_base: int = typer.Option(14000, "--port-base", metavar="P", help="with --hosts: player p listens on P + p"),
    backend: Optional[str] = typer.Option(None, "--backend", metavar="fanng|mp-spdz", help="the build's backend (default: the one it was built for; a different one is refused)"),
):
    """Run the generated program for real (3 players on 127.0.0.1) and check its logits against the reference;
    with --hosts, start only this machine's party (the others start from their bundles on their hosts)."""
    from ..backends.mamba.runtime import RunOptions, run as run_program
    from ..pipeline.verify import VerifyOptions, verify as run_verify

    built_for = _backend_of_build(directory)
    if backend is not None and backend != built_for:
        raise UserError(f"{directory} was built with --backend {built_for}; rebuild it with --backend {backend} to run it there")
    if built_for == "mp-spdz":
        if hosts is not None or party is not None or certs_dir is not None or compiler is not None or parties != 3:
            raise UserError("--hosts, --party, --certs, --compiler and --parties are for FANNG builds; an MP-SPDZ run takes --runtime DIR")
        _run_mp_spdz(directory, runtime, execution, timeout, keep, trust_pickle, trust_torchscript)
        return
    if hosts is not None:
        if party is None or certs_dir is None:
            raise UserError("--hosts needs --party P (this machine's party) and --certs CERTS (from mpc-export certs)")
        from ..deploy.party import run_party

        log = run_party(directory, runtime, compiler, _hosts(hosts), party, certs_dir, port_base, timeout,
                        trust_pickle, trust_torchscript, progress=lambda msg: err_console.print(msg, soft_wrap=True))
        console.print(f"party {party} finished; log {log}", soft_wrap=True, highlight=False, markup=False)
        if party != 0:
            return  # player 0 prints the logits and checks them
        report = run_verify(VerifyOptions(directory=directory, mpc_log=log, onnx=False, min_agreement=0.0,
                                          trust_pickle=trust_pickle, trust_torchscript=trust_torchscript))
        m = report["mpc"]
        console.print(f"runtime check: passed; max |MPC - reference| = {m['max_ulp_err']} ulp, bound {m['bound_ulp']} ulp",
                      highlight=False)
        if not m["ok"]:
            raise VerificationFailed(f"the MPC run differs from the reference beyond the bound; first at {m.get('first_difference')}")
        return
    if party is not None or certs_dir is not None:
        raise UserError("--party and --certs go with --hosts (a three-host run)")
    result = run_program(RunOptions(directory=directory, runtime=runtime, compiler=compiler, parties=parties,
                                    execution=execution, timeout=timeout, keep=keep,
                                    trust_pickle=trust_pickle, trust_torchscript=trust_torchscript),
                         progress=lambda msg: err_console.print(msg))
    report = run_verify(VerifyOptions(directory=directory, mpc_log=result.log_path, onnx=False, min_agreement=0.0,
                                      trust_pickle=trust_pickle, trust_torchscript=trust_torchscript))
    m = report["mpc"]
    console.print(f"runtime check: {result.runtime_check} (the program opened fresh Beaver triples and random bits and "
                  "found them random before any input)")
    console.print(f"MPC run: {result.wall_s:.1f} s for the players (estimated {result.estimate_s:.0f} s; compile "
                  f"{result.compile_s:.1f} s), peak {', '.join(f'{p} MB' for p in result.peak_mb)}; player 0's log "
                  f"{result.log_path}", soft_wrap=True, highlight=False)
    console.print("party isolation: " + ", ".join(f"player {p}'s run root held {n} file(s) of the build's data folder"
                                                   for p, n in enumerate(result.data_files_per_player)))
    if result.root is not None:
        console.print(f"kept run roots: {result.root}", soft_wrap=True, highlight=False)  # a path: never broken
    reference = report["fixed_logits"]
    table = show.table("logits: MPC vs reference (raw integers, units of 2^-F)",
                       ["execution", "class", "MPC", "reference", "|diff|"],
                       right=("execution", "class", "MPC", "reference", "|diff|"))
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


def _backend_of_build(directory: Path) -> str:
    from ..verify.integrity import read_manifest

    return read_manifest(directory).backend


def _run_mp_spdz(directory, runtime, execution, timeout, keep, trust_pickle, trust_torchscript) -> None:
    """run on an MP-SPDZ build: compile, 3 parties on 127.0.0.1, logits checked against the reference."""
    from ..backends.mpspdz.runtime import MpSpdzRunOptions, run as run_parties
    from ..pipeline.verify import VerifyOptions, verify as run_verify

    result = run_parties(MpSpdzRunOptions(directory=directory, runtime=runtime, execution=execution, timeout=timeout, keep=keep,
                                          trust_pickle=trust_pickle, trust_torchscript=trust_torchscript),
                         progress=lambda msg: err_console.print(msg, soft_wrap=True, highlight=False, markup=False))
    report = run_verify(VerifyOptions(directory=directory, mpc_log=result.log_path, onnx=False, min_agreement=0.0,
                                      trust_pickle=trust_pickle, trust_torchscript=trust_torchscript))
    show.mp_spdz_run(console, result, report)
    m = report["mpc"]
    if not m["ok"]:
        raise VerificationFailed(f"the MPC run differs from the reference (exact truncation: they must be equal); first at {m.get('first_difference')}")


def _hosts(text: str) -> list[str]:
    return [h.strip() for h in text.split(",")]


@app.command(short_help="a root CA and one certificate and key per player, for three hosts")
def certs(
    hosts: str = typer.Option(..., "--hosts", metavar="H0,H1,H2", help="the three players' addresses or host names"),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="new directory for RootCA.crt/.key and Player1..3.crt/.key"),
):
    """Make a fresh root CA and one certificate and key per player (CN P1..P3, as FANNG-MPC's NetworkData.txt
    names them). Give each party only its own key, through `mpc-export bundle`; keep RootCA.key offline."""
    from ..deploy.certs import make_certificates

    made = make_certificates(_hosts(hosts), out)
    console.print(f"certificates for {hosts} in {made.directory} (keys mode 0600; RootCA.key stays with you); "
                  f"next: mpc-export bundle DIR --out BUNDLES --hosts {hosts} --certs {out}", soft_wrap=True, highlight=False,
                  markup=False)


@app.command(short_help="one directory per party holding exactly what that party receives")
def bundle(
    directory: Path = typer.Argument(..., metavar="DIR", help="directory written by build"),
    out: Path = typer.Option(..., "--out", metavar="BUNDLES", help="new directory for player-0/, player-1/, player-2/"),
    hosts: str = typer.Option(..., "--hosts", metavar="H0,H1,H2", help="the three players' addresses or host names"),
    certs_dir: Optional[Path] = typer.Option(None, "--certs", metavar="CERTS", help="directory written by mpc-export certs (FANNG builds; an MP-SPDZ build's bundles get fresh certificates)"),
    port_base: int = typer.Option(14000, "--port-base", metavar="P", help="player p listens on P + p"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="the model is a pickled nn.Module you trust (loading runs its code)"),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="the model is a TorchScript file you trust (loading runs its code)"),
):
    """Check the build as run does, then write one bundle per party: the program, the IO answers, the data
    files that party receives (player 0: parameters and inputs; players 1 and 2: only public ones), the
    hosts' NetworkData.txt, the certificates with only that party's key, run-player.sh and FILES.sha256."""
    from ..deploy.bundle import write_bundles

    written = write_bundles(directory, out, _hosts(hosts), certs_dir, port_base,
                            trust_pickle=trust_pickle, trust_torchscript=trust_torchscript)
    for path in written:
        files = sum(1 for p in path.rglob("*") if p.is_file())
        console.print(f"{path}: {files} files", soft_wrap=True, highlight=False, markup=False)
    start = ("./run-party.sh MP_SPDZ_DIR" if (written[0] / "run-party.sh").is_file()
             else "./run-player.sh RUNTIME_DIR [COMPILER_DIR]")
    console.print("hand each party its directory; each runs `mpc-export check-bundle player-<p>` (or sha256sum -c "
                  f"FILES.sha256) and then `{start}` on its host", highlight=False)


@app.command(name="check-bundle", short_help="check a party's bundle against its FILES.sha256")
def check_bundle_command(
    bundle_dir: Path = typer.Argument(..., metavar="BUNDLE", help="one party's directory written by mpc-export bundle"),
):
    """Re-hash every file of BUNDLE against its FILES.sha256: a changed, missing or unlisted file, a link or
    a path outside the bundle fails (exit 1)."""
    from ..deploy.bundle import check_bundle

    problems = check_bundle(bundle_dir)
    if problems:
        for problem in problems:
            console.print(f"- {problem}", highlight=False, markup=False)
        raise VerificationFailed(f"{bundle_dir}: {len(problems)} problem(s) with the bundle (listed above)")
    console.print(f"{bundle_dir}: every file matches FILES.sha256", highlight=False, markup=False)


@app.command(short_help="list every problem that keeps MODEL from exporting")
def check(
    model: Path = typer.Argument(..., metavar="MODEL", help="model file (.pth state_dict, .onnx, TorchScript)"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="load a fully pickled nn.Module (runs its code: only for files you trust)"),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="load a TorchScript file (runs its TorchScript code: only for files you trust)"),
):
    """List every node of MODEL that cannot be exported, each with its reason and the rewrite where one
    exists; exit 2 if there is any (build runs the same check first)."""
    from ..fold import lower_for_mpc
    from ..load.model import check_model, load_model

    problems = check_model(model, trust_pickle=trust_pickle, trust_torchscript=trust_torchscript)
    if not problems:
        try:
            graph, _ = lower_for_mpc(load_model(model, trust_pickle=trust_pickle, trust_torchscript=trust_torchscript))
        except UserError as exc:
            problems = [str(exc)]
    if problems:
        for number, problem in enumerate(problems, 1):
            console.print(f"{number}. {problem}", highlight=False, markup=False)
        raise UserError(f"{model}: {len(problems)} problem(s) keep it from exporting (listed above)")
    ops = sorted({node.op for node in graph.nodes if node.op != "input"})
    console.print(f"{model}: exports: {len(graph.nodes) - 1} layers ({', '.join(ops)}); next: mpc-export build {model}",
                  highlight=False)


@app.command(short_help="what the secure run costs, per layer and in total")
def cost(
    directory: Optional[Path] = typer.Argument(None, metavar="DIR", help="directory written by build (default: the last build's --out)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON object"),
    runtime: Optional[Path] = typer.Option(None, "--runtime", metavar="MP_SPDZ_DIR", help="an MP-SPDZ build: also compile the program with MP-SPDZ's compiler and report its counts (preprocessing, rounds, expected communication)"),
):
    """Per-layer secret multiplications, truncations, comparisons, values per channel, rounds (estimate)."""
    from ..verify.integrity import read_manifest

    directory = _build_directory(directory)
    manifest = read_manifest(directory)
    report = {"cost": manifest.cost, "input_values_per_channel": manifest.input_values_per_channel}
    if runtime is not None:
        if manifest.backend != "mp-spdz":
            raise UserError("--runtime is for MP-SPDZ builds (FANNG's cost report is already the MAMBA compiler's count)")
        report["compiler"] = _mp_spdz_compiler_counts(directory, manifest, runtime)
    if as_json:
        print(json.dumps(report))
        return
    show.cost_report(console, manifest)
    if "compiler" in report:
        show.mp_spdz_compiler(console, report["compiler"])


def _mp_spdz_compiler_counts(directory: Path, manifest, runtime: Path) -> dict:
    """MP-SPDZ's compiler's counts for the build's program (compiled in a temporary directory). The program
    is the build's file as written; `verify` checks it is what the model gives."""
    import tempfile

    from ..backends import backend_of
    from ..backends.mpspdz.runtime import checked_files, compile_program, find_runtime

    backend = backend_of(manifest)
    program, _ = checked_files(manifest)
    flags = [str(f) for f in manifest.backend_record.get("compile_flags", [])]
    with tempfile.TemporaryDirectory(prefix="mpc-export-cost-") as work:
        counts, _ = compile_program(find_runtime(runtime, backend.protocol), directory / program, Path(work), flags, 1800)
    return counts


TRACEBACK_VARIABLE = "MPC_EXPORT_TRACEBACK"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every context manager (a staged build, a run's
    players) cleans up on the way out."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _error(text: str) -> None:
    """One line on stderr, printed as text (a message may hold brackets or colons: no markup, no emoji)."""
    err_console.print("error: " + text, markup=False, emoji=False, highlight=False, soft_wrap=True)


def _plain_arguments(command) -> None:
    """Typer writes a required argument as {MODEL} and adds its type (<path>) in help; show the plain
    metavar the way every Unix tool does (MODEL, [DIR])."""
    for sub in getattr(command, "commands", {}).values():
        for param in sub.params:
            if param.param_type_name == "argument" and param.metavar:
                shown = param.metavar if param.required else f"[{param.metavar}]"
                param._usage_display_name = lambda shown=shown: shown
                param.display_type_rich = lambda ctx: ""


def command():
    """The click command behind the typer app, with plain argument names."""
    cli = typer.main.get_command(app)
    _plain_arguments(cli)
    return cli


def main() -> None:
    """Exit codes: 0 ok, 1 verification failed or an unexpected error, 2 bad input or usage, 130 Ctrl-C,
    143 SIGTERM. An unexpected exception prints one line; MPC_EXPORT_TRACEBACK=1 shows the traceback."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = command()(standalone_mode=False)  # typer turns Ctrl-C into a returned 130 in this mode
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
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # a usage error: one line, like ours
            context = getattr(exc, "ctx", None)
            where = context.command_path if context is not None else "mpc-export"
            _error(f"{exc.format_message()} (see: {where} -h)")
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
