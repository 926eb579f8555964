"""What the commands print: short summaries that fit an 80-column terminal, full tables behind
``--verbose``. Numbers in tables are compact (``82.7 M``); exact totals are printed as text below them.
Nothing is cut: table cells fold instead of ending in an ellipsis, text lines wrap."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def class_name(index: int, classes: int) -> str:
    """'cat (class 3)' for a 10-class model (CIFAR-10's labels), else 'class 3'."""
    return f"{CIFAR10_CLASSES[index]} (class {index})" if classes == 10 else f"class {index}"


def compact(n: int | float) -> str:
    """An integer count in at most 7 characters: 99,999 / 4.29 M / 82.7 M / 1.23 G."""
    n = int(n)
    if abs(n) < 100_000:
        return f"{n:,}"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.2f} {unit}" if abs(value) < 10 else f"{value:.1f} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
    return f"{n:,}"


def table(title: str, columns: list[str], right: tuple[str, ...] = ()) -> Table:
    """A borderless table, two spaces between columns, cells that fold rather than being cut."""
    t = Table(title=title, box=None, padding=(0, 1), pad_edge=False, title_justify="left", header_style="bold",
              title_style="")
    for name in columns:
        t.add_column(name, overflow="fold", justify="right" if name in right else "left")
    return t


def fields(rows: list[tuple[str, str]]) -> Table:
    """Label / value lines; long values wrap under themselves."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def _convolutions(s: dict) -> str:
    """The convolution option as the layers take it: Winograd applies only to 3x3 stride-1 layers."""
    chosen, modes = s["protocol"]["convolution"], list(s.get("convolution_modes", {}).values())
    if chosen != "winograd" or not modes:
        return f"{chosen} convolutions"
    used = modes.count("winograd")
    if used == len(modes):
        return "winograd convolutions"
    if used == 0:
        return "winograd requested, applied to none of its convolutions (3x3, stride 1 only): all direct"
    return f"winograd convolutions ({used} of {len(modes)} layers; the others direct)"


def _macs(macs: int) -> str:
    """Multiply-accumulates per image, in the unit that shows them (a small net is not "0.001 GMAC")."""
    for unit, scale in (("GMAC", 1e9), ("MMAC", 1e6), ("kMAC", 1e3)):
        if macs >= scale:
            return f"{macs / scale:.3g} {unit}"
    return f"{macs} MAC"


def _preprocessing_note(prep: dict, model_format: str) -> str:
    from ..pipeline.build import ASSUMED_PREPROCESSING

    source = prep.get("source")
    if source == "assumed":
        article = {"onnx": "an ONNX", "torchscript": "a TorchScript", "pickle": "a pickled"}.get(model_format, f"a {model_format}")
        return f" ({ASSUMED_PREPROCESSING.format(format=article)})"
    return {"architecture": " (the architecture's training preprocessing)", "command line": " (--mean/--std)"}.get(source, "")


def _backend_rows(s: dict, c: dict, parameter_files: int, channels: list[int]) -> list[tuple[str, str]]:
    """The summary's cost and files rows, as the build's backend counts them."""
    if s.get("backend") == "mp-spdz":
        mp = s["mp_spdz"]
        domain = mp["domain"]
        where = (f"ring Z/2^{domain['ring_bits']}" if domain["kind"] == "ring"
                 else f"a prime of at least {domain['prime_bits_at_least']} bits")
        return [("backend", f"MP-SPDZ, protocol {mp['protocol']} ({mp['security']}), {where} (widest step "
                            f"{mp['largest_bit_length']} bits); compile with compile.py {' '.join(mp['compile_flags'])}"),
                ("cost", f"{c['dot_products']:,} dot products, {c['multiplications']:,} secret products, "
                         f"{c['truncations']:,} exact truncations, {c['comparisons']:,} comparisons per execution"),
                ("files", f"{s['files']} files, {s['bytes'] / 1e6:.1f} MB: the MP-SPDZ program, player 0's input file "
                          f"({mp['input_file']}), {parameter_files} parameter files and {len(s['executions'])} input(s) as "
                          "records of player 0's data, the expected outputs")]
    return [("cost", f"{c['triples']:,} triples, {c['bits']:,} random bits, {c['rounds']:,} rounds"),
            ("files", f"{s['files']} files, {s['bytes'] / 1e6:.1f} MB: {parameter_files} parameter files on channels "
                      f"{channels[0]}-{channels[-1]}, {len(s['executions'])} input(s), the program, IO answers")]


def build_summary(console: Console, s: dict, verbose: bool) -> None:
    model, fx, c = s["model"], s["fixed_point"], s["cost"]
    classes = s["classes"]
    prep = s["preprocessing"]
    normalisation = "" if prep.get("mean") is None else f"; mean {_numbers(prep['mean'])}, std {_numbers(prep['std'])}"
    predictions = [f"execution {e['index']} ({e['source']}): {class_name(e['predicted_class'], classes)}"
                   for e in s["executions"]]
    parameter_files = len(s["tensors"])
    channels = sorted(t["channel"] for t in s["tensors"])
    rows = [
        ("model", f"{model['description']}: {model['parameters']:,} parameters, {_macs(model['macs'])}, "
                  f"{len(s['layers']) - 1} layers ({model['format']})"),
        ("preprocessing", prep["formula"] + normalisation + _preprocessing_note(prep, model["format"])),
        ("fixed point", f"F = {fx['frac_bits']} fractional bits, K = {fx['total_bits']} total, R = "
                        f"{fx['reading_precision']}; {fx['number_format']} files"),
        ("protocol", f"{s['protocol']['truncation']} truncation, {_convolutions(s)}, "
                     f"{s['protocol'].get('weights', 'private')} weights, {s['protocol'].get('sparsity', 'private')} sparsity"),
        *_backend_rows(s, c, parameter_files, channels),
        *(("notice", notice) for notice in s.get("notices", [])),
        ("prediction", "; ".join(predictions)),
        ("reveals", s["disclosure"]),
    ]
    calibration = s.get("calibration")
    if calibration:
        rows.append(("calibrated", f"{calibration['narrowed']} comparison(s) narrowed to the peaks of "
                                   f"{calibration['images']} image(s) of {calibration['dataset']} plus "
                                   f"{calibration['margin_bits']} bits; verify --dataset fails on any value beyond"))
    broken = [h for h in s["headroom"] if h["worst_case_headroom_bits"] < 0]
    if broken:
        rows.append(("bit budget", f"the worst case from the weights exceeds K at {len(broken)} stage(s) (first: "
                                   f"{broken[0]['node']} {broken[0]['stage']}); the inputs built fit; verify "
                                   "--dataset checks every intermediate on real data"))
    console.print(f"built {s['out']} in {s['build_seconds']} s", highlight=False)
    console.print(fields(rows), highlight=False)
    if verbose:
        _tensor_table(console, s)
        _headroom_table(console, s)
    console.print(f"next: mpc-export verify {s['out']}{s.get('trust_flags', '')}" + ("" if verbose else "  (build --verbose: every tensor, "
                                                             "channel and bit budget)"), highlight=False)


def _numbers(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def _tensor_table(console: Console, s: dict) -> None:
    folders = sorted({str(Path(t["path"]).parent.parent) for t in s["tensors"]})
    t = table(f"parameter tensors, their channels and files (under {', '.join(folders)})",
              ["tensor", "channel", "values", "file"], right=("channel", "values"))
    for tensor in s["tensors"]:
        path = Path(tensor["path"])
        t.add_row(tensor["tensor"], str(tensor["channel"]), f"{tensor['count']:,}", f"{path.parent.name}/{path.name}")
    console.print(t)


def _headroom_table(console: Console, s: dict) -> None:
    t = table("bit budget: bits of headroom below each stage's limit, worst case from the weights and on the "
              "inputs built", ["layer", "stage", "limit", "worst", "headroom", "built", "headroom"],
              right=("limit", "worst", "headroom", "built"))
    for h in s["headroom"]:
        t.add_row(h["node"], h["stage"], f"2^{h['limit_bits']}", f"2^{h['worst_case_bits']:.1f}",
                  f"{h['worst_case_headroom_bits']:.1f}",
                  "-" if h["calibrated_bits"] is None else f"2^{h['calibrated_bits']:.1f}",
                  "-" if h["calibrated_headroom_bits"] is None else f"{h['calibrated_headroom_bits']:.1f}")
    console.print(t)


def cost_report(console: Console, manifest) -> None:
    """The cost report of a build (a ``manifest.Manifest``)."""
    if manifest.backend == "mp-spdz":
        _mp_spdz_cost_report(console, manifest)
        return
    protocol = manifest.fixed_spec.protocol.as_dict()
    t = table(f"cost per execution of {Path(manifest.program.path).name} ({protocol['truncation']} "
              f"truncation, {protocol['convolution']} convolutions; the runtime check and the parameters' "
              "input once per program)",
              ["layer", "products", "truncs", "compars", "triples", "bits", "rounds", "zero w"],
              right=("products", "truncs", "compars", "triples", "bits", "rounds", "zero w"))
    for row in manifest.cost["layers"]:
        zeros = row["weight_zero_fraction"]
        t.add_row(row["node"], *(compact(row[k]) for k in ("multiplications", "truncations", "comparisons", "triples",
                                                           "bits", "rounds")),
                  "" if zeros is None else f"{zeros * 100:.1f} %")
    total = manifest.cost["totals"]
    t.add_row("total", *(compact(total[k]) for k in ("multiplications", "truncations", "comparisons", "triples", "bits",
                                                      "rounds")), "")
    console.print(t)
    console.print(f"total: {total['multiplications']:,} secret products, {total['truncations']:,} truncations, "
                  f"{total['comparisons']:,} comparisons; {total['triples']:,} triples and {total['bits']:,} random bits "
                  "(the preprocessing the MAMBA compiler's \"Program requires\" line counts); "
                  f"{total['rounds']:,} rounds (network round trips: every opening and private-input instruction, as the "
                  "runtime counts them)",
                  highlight=False)
    values = manifest.input_values_per_channel
    console.print("values input per channel: " + ", ".join(f"{ch}: {n:,}" for ch, n in values.items()), highlight=False)
    options = manifest.cost.get("options")
    if options:
        t = table("the same model with each option (this build's truncation and calibration kept; public weights "
                  "reveal the model, public sparsity which weights are zero)",
                  ["convolution", "weights", "sparsity", "triples", "random bits", "rounds"],
                  right=("triples", "random bits", "rounds"))
        chosen = tuple(protocol.get(k, "private") for k in ("convolution", "weights", "sparsity"))
        for o in options:
            mine = (o["convolution"], o["weights"], o.get("sparsity", "private")) == chosen
            t.add_row(o["convolution"] + (" (this build)" if mine else ""), o["weights"], o.get("sparsity", "private"),
                      compact(o["triples"]), compact(o["bits"]), compact(o["rounds"]))
        console.print(t)


def _mp_spdz_cost_report(console: Console, manifest) -> None:
    mp = manifest.backend_record
    t = table(f"cost per execution of {Path(manifest.program.path).name} (MP-SPDZ, protocol {mp.get('protocol')}; "
              "the parameters are input once per program)",
              ["layer", "dot products", "products", "truncs", "compars"], right=("dot products", "products", "truncs", "compars"))
    keys = ("dot_products", "multiplications", "truncations", "comparisons")
    for row in manifest.cost["layers"]:
        t.add_row(row["node"], *(compact(row[k]) for k in keys))
    total = manifest.cost["totals"]
    t.add_row("total", *(compact(total[k]) for k in keys))
    console.print(t)
    console.print(f"truncations by (bit length, shift): {total['truncations_by_shape']}; comparisons by bit length: "
                  f"{total['comparisons_by_bits']}", highlight=False)
    console.print("each dot product is one reshare whatever its length; the preprocessing and rounds a comparison or "
                  "truncation needs depend on the protocol: `mpc-export cost DIR --runtime MP_SPDZ_DIR` prints MP-SPDZ's "
                  "compiler counts", highlight=False)


def mp_spdz_compiler(console: Console, compiler: dict) -> None:
    """MP-SPDZ's compiler's "Program requires" counts (the whole program: every execution and the
    parameters' input) and its expected communication."""
    t = table("MP-SPDZ's compiler: the program requires (all executions)", ["what", "count"], right=("count",))
    for what, count in compiler.get("requires", {}).items():
        t.add_row(what, f"{count:,}")
    console.print(t)
    expected = compiler.get("expected_communication")
    if expected:
        console.print(f"expected communication: {expected['online_mb']:,.1f} MB online, {expected['offline_mb']:,.1f} MB "
                      "offline (the compiler's model; `run` measures it)", highlight=False)


def mp_spdz_run(console: Console, result, report: dict) -> None:
    """What an MP-SPDZ run measured, each party's run root, and the logits against the reference."""
    console.print(f"MPC run ({result.protocol}): {result.wall_s:.1f} s for the parties (MP-SPDZ's Time "
                  f"{_maybe(result.time_s, '{:.2f} s')}, preprocessing included; compile {result.compile_s:.1f} s); data sent "
                  f"{_maybe(result.global_data_mb, '{:.1f} MB')} by all parties; log {result.log_path}", soft_wrap=True,
                  highlight=False, markup=False)
    t = table("parties", ["party", "peak memory", "data sent", "rounds", "files in its run root"],
              right=("peak memory", "data sent", "rounds"))
    for p in result.parties:
        t.add_row(str(p.party), f"{p.peak_mb} MB", _maybe(p.data_sent_mb, "{:.1f} MB"), _maybe(p.rounds, "{:,}"),
                  ", ".join(f for f in p.files if not f.startswith("Programs/") and not re.fullmatch(r"Player-Data/[0-9a-f]{8}\.\d", f)))
    console.print(t)
    mp_spdz_compiler(console, result.compiler)
    reference = report["fixed_logits"]
    t = table("logits: MPC vs reference (raw integers, units of 2^-F)", ["execution", "class", "MPC", "reference", "|diff|"],
              right=("execution", "class", "MPC", "reference", "|diff|"))
    for e, values in sorted(result.logits.items()):
        for j, v in sorted(values.items()):
            t.add_row(str(e), str(j), str(v), str(reference[e][j]), str(abs(v - reference[e][j])))
    console.print(t)
    m = report["mpc"]
    console.print(f"max |MPC - reference| = {m['max_ulp_err']} ulp (exact truncation: equal required): "
                  f"{'ok' if m['ok'] else 'FAILED'}", highlight=False)


def _maybe(value, form: str) -> str:
    return "?" if value is None else form.format(value)


def verify_report(console: Console, r: dict) -> None:
    if r.get("float_acc") is not None:  # first: a model scoring near chance makes everything below moot
        console.print(f"float model on {r['dataset']}: {r['float_acc'] * 100:.2f} % accuracy ({r['images']} images, "
                      f"preprocessing {r['preprocessing']})", highlight=False, markup=False)
    for check in r.get("integrity", []):
        console.print(f"integrity: {check}", highlight=False)
    ulp = f"2^-{r['frac_bits']}"
    simulated = "simulated_mpc_ulp" in r["layers"][0]
    onnx_images = r.get("onnx_images", r["images"])
    onnx_scope = "" if onnx_images in (0, r["images"]) else f" (its first {onnx_images} image(s))"
    t = table(f"per layer, {r['images']} image(s), in units of {ulp}: max and mean |reference - float model|, the "
              f"tolerance, max |reference - onnxruntime|{onnx_scope}, the bound on |MPC - reference|"
              + (" and its largest simulated value" if simulated else ""),
              ["layer", "float", "max", "mean", "tolerance", "onnx", "MPC", *(["sim."] if simulated else []), "ok"],
              right=("max", "mean", "tolerance", "onnx", "MPC", "sim."))
    for row in r["layers"]:
        onnx = "-" if row["onnx_max_abs_err"] is None else f"{row['onnx_max_abs_err'] * 2 ** r['frac_bits']:.1f}"
        t.add_row(row["name"], row["torch_module"], f"{row['max_ulp_err']:.1f}",
                  f"{row['mean_abs_err'] * 2 ** r['frac_bits']:.2f}", f"{row['tolerance_ulp']:.1f}", onnx,
                  compact(row["bound_ulp"]), *([compact(row["simulated_mpc_ulp"])] if simulated else []),
                  "ok" if row["ok"] else "FAIL")
    console.print(t, highlight=False)
    tight = min(r["overflow"], key=lambda o: o["headroom_bits"])
    console.print(f"tightest intermediate: {tight['node']} {tight['stage']} at 2^{tight['peak_bits']} of "
                  f"2^{tight['limit_bits']} ({tight['headroom_bits']} bits headroom)", highlight=False)
    if r.get("stages"):
        _stages_table(console, r)
    console.print(f"argmax agreement fixed vs float: {r['agreement'] * 100:.2f} % of {r['images']}; worst logit "
                  f"error {r['worst_logit_err']:.4f}", highlight=False)
    if "mpc" in r:
        m = r["mpc"]
        for layer in m.get("layers", []):
            console.print(f"MPC log {layer['name']}: {layer['values']} values, max |MPC - reference| = "
                          f"{layer['max_ulp_err']} ulp, bound {layer['bound_ulp']} ulp: {'ok' if layer['ok'] else 'FAIL'}",
                          highlight=False)
        console.print(f"MPC log: max |MPC - reference| = {m['max_ulp_err']} ulp, bound {m['bound_ulp']} ulp: "
                      f"{'ok' if m['ok'] else 'FAIL'}", highlight=False)
    console.print(("verified" if r["ok"] else "verification FAILED") + f" in {r['seconds']} s", highlight=False)
    if r["ok"] and "mpc" not in r:
        if r.get("backend") == "mp-spdz":
            console.print(f"next: mpc-export run {r['directory']} --runtime MP_SPDZ_DIR{r.get('trust_flags', '')}  (a real "
                          "3-party run of MP-SPDZ)", highlight=False)
        else:
            console.print(f"next: mpc-export run {r['directory']} --runtime FANNG_DIR{r.get('trust_flags', '')}  (a real "
                          "3-party run; each player holds up to ~6.4 GB, the seed's measured peak)", highlight=False)


def _percent(value) -> str:
    return "-" if value is None else f"{value * 100:.2f} %"


def _stages_table(console: Console, r: dict) -> None:
    t = table(f"accuracy at each stage on {r['images']} labelled image(s); agreement = same predicted class",
              ["stage", "accuracy", "vs float", "vs previous"], right=("accuracy", "vs float", "vs previous"))
    for row in r["stages"]:
        t.add_row(row["stage"], _percent(row["accuracy"]), _percent(row["agreement_with_float"]),
                  _percent(row["agreement_with_previous"]))
    console.print(t, highlight=False)
    notes = [row["note"] for row in r["stages"] if row.get("note")]
    for note in notes:
        console.print(f"secure run (no run here): {note}", highlight=False)


ZERO_FLOOR = 0.1  # where a zero is drawn on the log axis (marked as zero on the plot)


def plot(report: dict, path: Path) -> None:
    """PNG: per layer, max |reference - float| against its tolerance, and the MPC deviation: exactly 0 for
    an exact build (drawn on a marked zero line), else the simulated runs' largest deviation and, when
    it fits on the same scale, the sound bound. Units of 2^-F; zeros are drawn at ZERO_FLOOR and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["layers"]
    xs = list(range(len(rows)))

    def floor(values):
        return [max(v, ZERO_FLOOR) for v in values]

    fig, ax = plt.subplots(figsize=(9, 4.5))
    errors = [r["max_ulp_err"] for r in rows]
    tolerance = [r["tolerance_ulp"] for r in rows]
    ax.semilogy(xs, floor(errors), "o-", label="max |reference - float model|")
    ax.semilogy(xs, floor(tolerance), "s--", label="tolerance (derived)")
    if report.get("truncation") == "exact":
        ax.semilogy(xs, [ZERO_FLOOR] * len(rows), "^:", color="tab:green", label="|MPC - reference| = 0 (exact truncation)")
    else:
        if "simulated_mpc_ulp" in rows[0]:
            ax.semilogy(xs, floor([r["simulated_mpc_ulp"] for r in rows]), "^-", label="|MPC - reference|, simulated runs")
        bounds = [r["bound_ulp"] for r in rows]
        if max(bounds) <= 1e3 * max(max(tolerance), 1):  # a bound far off the scale would flatten the rest
            ax.semilogy(xs, floor(bounds), "v:", label="bound on |MPC - reference|")
        else:
            ax.text(0.01, 0.97, f"bound on |MPC - reference| up to {max(bounds):.3g}: off this scale (see the table)",
                    transform=ax.transAxes, va="top", fontsize=8)
    ax.axhline(ZERO_FLOOR, color="grey", linewidth=0.5)
    ticks = [t for t in ax.get_yticks() if t > ZERO_FLOOR]
    ax.set_yticks([ZERO_FLOOR, *ticks], ["0", *[f"{t:g}" for t in ticks]])
    ax.set_ylim(bottom=ZERO_FLOOR / 2)
    ax.set_xticks(xs, [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel(f"units of 2^-{report['frac_bits']} (zero drawn on the 0 line)")
    accuracy = "" if report.get("float_acc") is None else (
        f"; accuracy float {report['float_acc'] * 100:.2f} %, fixed point {report['fixed_acc'] * 100:.2f} %")
    verdict = "VERIFIED" if report.get("ok") else "VERIFICATION FAILED"
    ax.set_title(f"{verdict}: {report.get('model_description', report['model'])}, {report['images']} image(s), "
                 f"{report.get('truncation', '?')} truncation{accuracy}; argmax agreement "
                 f"{report['agreement'] * 100:.2f} %", fontsize=9, color="black" if report.get("ok") else "red")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
