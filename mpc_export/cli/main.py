"""The `mpc-export` command line (typer + rich). Errors in the user's input print one line, exit 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserError, VerificationFailed
from ..quantize.fixedpoint import FixedSpec

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Export a trained CNN to FANNG-MPC / SCALE-MAMBA and prove it right.")
console = Console(stderr=False)
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
    channel_map: Optional[Path] = typer.Option(None, "--channel-map", help="channel map TOML (default: the seed table)"),
    force: bool = typer.Option(False, "--force", help="replace an existing output directory"),
    debug: bool = typer.Option(False, "--debug", help="make the program print every layer's output (reveals them!)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
):
    """Turn MODEL into parameter files, input files, the MAMBA program and IO answers."""
    from rich.progress import Progress

    from .build import BuildOptions, build as run_build

    opts = BuildOptions(model=model, out=out, inputs=list(input), number_format=number_format, channel_map=channel_map,
                        force=force, debug=debug,
                        fx=FixedSpec(frac_bits=frac_bits, total_bits=total_bits, reading_precision=reading_precision))
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
        "tensors": [{**t, **{k: f[k] for k in ("channel", "path", "count")}} for t, f in
                    zip(m["budget"]["tensors"], [f for f in files if f["role"] == "parameter"])] if False else [
            {k: f[k] for k in ("tensor", "channel", "path", "count", "shape", "bytes")} for f in files if f["role"] == "parameter"],
        "headroom": m["budget"]["stages"],
        "executions": m["executions"],
        "files": len(files) + 1,
        "bytes": sum(f["bytes"] for f in files),
        "cost": m["cost"]["totals"],
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
    console.print(f"program {s['program']}: {c['multiplications']:,} secret multiplications, {c['truncations']:,} truncations, "
                  f"{c['comparisons']:,} comparisons")
    console.print(f"wrote {s['files']} files, {s['bytes']:,} bytes to {s['out']} in {s['build_seconds']} s")


def main() -> None:
    try:
        app(standalone_mode=False)
    except (UserError, VerificationFailed) as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # typer's (vendored click) usage errors carry show() and exit_code
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Exit" and hasattr(exc, "exit_code"):
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
