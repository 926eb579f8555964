"""`mpc-export verify`: integrity, the fixed-point reference from the written files, float oracles."""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backends import backend_of
from ..errors import UserError, VerificationFailed
from ..load.images import load_image
from ..load.torch_models import torch_module
from ..fixedpoint import bits_of, decode, encode
from ..reference.run import Trace, run_fixed, run_float
from ..verify.crosscheck import OnnxOracle, export_onnx, torch_layer_outputs
from ..verify.rederive import input_values, rederive
from ..verify.reference import load_reference
from ..verify.layers import LayerTable
from ..verify.mpc_log import parse_debug_log, parse_mpc_log


@dataclass
class VerifyOptions:
    directory: Path
    inputs: list[Path] = field(default_factory=list)
    dataset: Path | None = None
    limit: int | None = None
    model: Path | None = None
    mpc_log: Path | None = None
    batch: int = 250
    onnx: bool = True
    onnx_images: int = 250  # with a data set: images also run through onnxruntime (whole batches from the first)
    min_agreement: float = 0.995
    preprocessing_check: bool = True  # with a data set: fail when a common normalization suits the model far better
    simulate_mpc: int = 0  # runs of the reference with TruncPr's probabilistic rounding simulated
    trust_pickle: bool = False  # the user's flags, never the manifest's say
    trust_torchscript: bool = False


def _check_expected_outputs(manifest, graph, parsed, fixed_by_execution) -> None:
    for entry in manifest.files_of_role("expected_output"):
        got = fixed_by_execution[entry.execution][entry.tensor].ravel()
        written = parsed[entry.path]
        diff = np.flatnonzero(written != got)
        if diff.size:
            i = int(diff[0])
            raise VerificationFailed(f"{entry.path}: element {i} is {written[i]}, the reference computes {got[i]}")


def _check_overflow(graph, fx, trace: Trace) -> list[dict]:
    """Per stage: its limit, its sound worst case (``stage_budgets``: the declared flow propagated from the
    input range through the parameters the files hold), and the peak observed on the images checked
    (``observed_bits``). A value beyond the limit would wrap in the MPC run (VerificationFailed); an
    observed peak above the worst case would mean the bound is unsound (VerificationFailed: a bug of this
    tool, reported)."""
    from ..quantize.graph import stage_budgets

    worst = {(s.node, s.stage): s.worst_case for s in stage_budgets(graph, fx)}
    report = []
    for node, stage, peak in trace.stage_peaks(graph, fx):
        bound = worst.get((node, stage.name))
        report.append({"node": node, "stage": stage.name, "limit_bits": stage.limit_bits,
                       "peak_bits": round(bits_of(peak), 2), "observed_bits": round(bits_of(peak), 2),
                       "worst_case_bits": None if bound is None else round(bits_of(bound), 2),
                       "headroom_bits": round(stage.limit_bits - bits_of(peak), 2)})
        if peak >= 2**stage.limit_bits:
            raise VerificationFailed(f"overflow at {node} ({stage.name}): a value needs {bits_of(peak):.1f} bits, "
                                     f"the budget is {stage.limit_bits} bits (K = {fx.total_bits}); it would wrap in the MPC run")
        if bound is not None and peak > bound:
            raise VerificationFailed(f"{node} ({stage.name}): a value of {bits_of(peak):.2f} bits exceeds the worst case "
                                     f"{bits_of(bound):.2f} bits the tool derived: its bound is unsound (a bug; please report it)")
    return report


MAX_DATASET_BYTES = 2**31  # 2 GiB: CIFAR-10's 60,000 images and labels take 185 MB


def check_declared_sizes(path: Path, what: str) -> None:
    """Refuse, before numpy allocates anything, an .npz whose arrays declare more bytes than the limit or
    than the archive holds for them (a small file must not make the tool allocate GBs)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as stream:
                    version = np.lib.format.read_magic(stream)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(stream)
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > MAX_DATASET_BYTES:
                    raise UserError(f"{what}; {info.filename} declares {declared:,} bytes ({shape}), more than the "
                                    f"{MAX_DATASET_BYTES:,} a data set may take; refused before loading")
                if declared > info.file_size:
                    raise UserError(f"{what}; {info.filename} declares {declared:,} bytes ({shape}) but the file holds "
                                    f"{info.file_size:,}: truncated or forged; refused before loading")
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{what}; cannot read it: {str(exc).splitlines()[0][:120]}") from None


def load_dataset(path: Path, input_shape, classes: int):
    """x (N, H, W, C) uint8 pixels and y (N,) integer labels in [0, classes): every other layout, dtype,
    length or range is one clear error (checked before any work)."""
    what = f"{path}: a data set must be an .npz with x (N, {input_shape[1]}, {input_shape[2]}, {input_shape[0]}) uint8 and y (N,) labels"
    if not Path(path).is_file():
        raise UserError(f"data set {path} not found" if not Path(path).exists() else f"data set {path} is not a file")
    check_declared_sizes(Path(path), what)
    try:
        data = np.load(path, allow_pickle=False)
        missing = [key for key in ("x", "y") if key not in getattr(data, "files", ())]
        if missing:
            raise UserError(f"{what}; '{missing[0]}' is missing")
        x, y = data["x"], data["y"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated, not a zip, object arrays
        raise UserError(f"{what}; cannot read it: {str(exc).splitlines()[0][:120]}") from None
    if x.dtype != np.uint8:
        raise UserError(f"{what}; x is {x.dtype} (float pixels? scale them to 0-255 uint8)")
    expected = (input_shape[1], input_shape[2], input_shape[0])
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise UserError(f"{what}; x has shape {tuple(x.shape)} (NCHW? this needs NHWC)")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{what}; y has shape {tuple(y.shape)} for {len(x)} images")
    if y.dtype.kind not in "iu" or (len(y) and (int(y.min()) < 0 or int(y.max()) >= classes)):
        raise UserError(f"{what}; labels must be integers in 0..{classes - 1}")
    if len(x) == 0:
        raise UserError(f"{what}; it holds no images")
    return x, y


def _batches_from_dataset(data, limit: int | None, batch: int):
    x, y = data
    n = len(x) if limit is None else min(limit, len(x))
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        xb = x[start:stop].transpose(0, 3, 1, 2).astype(np.float64) / 255.0
        yield xb, y[start:stop].astype(np.int64), n


# normalizations CIFAR-10 models are commonly trained with: (mean, std) per RGB channel, None: pixel / 255
COMMON_NORMALIZATIONS = {
    "pixel / 255": (None, None),
    "CIFAR-10 mean/std": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "ImageNet mean/std": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mean 0.5, std 0.5 (pixels to [-1, 1])": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
PREPROCESSING_SAMPLE = 500  # images the float model is scored on under each normalization
PREPROCESSING_MIN_SAMPLE = 100  # fewer: no judgement (one image moves the accuracy by >= 1 %)
PREPROCESSING_MARGIN = 0.15  # a normalization this much more accurate than the build's means the build's is wrong


def preprocessing_mismatch(graph, float_model, data, limit: int | None) -> dict | None:
    """Score the float model on the data set's first images under the build's preprocessing and under each
    common normalization; when one of those is at least PREPROCESSING_MARGIN more accurate, the build
    almost certainly feeds the model inputs it was not trained on (a normalized model built without
    --mean/--std, or with the wrong ones): the finding, else None. A weak model is no finding: only the
    comparison counts, not the accuracy itself."""
    x, y = data
    count = min(len(x), PREPROCESSING_SAMPLE, limit or len(x))
    if count < PREPROCESSING_MIN_SAMPLE or graph.input_shape[0] != 3:
        return None
    pixels = x[:count].transpose(0, 3, 1, 2).astype(np.float64) / 255.0
    labels = y[:count].astype(np.int64)
    built = (graph.mean, graph.std)

    def accuracy(mean, std) -> float:
        graph.mean, graph.std = mean, std
        try:
            inputs = graph.preprocess(pixels)
        finally:
            graph.mean, graph.std = built
        return float(np.mean(np.argmax(float_model(inputs)[graph.output.name], axis=1) == labels))

    applied = accuracy(*built)
    scores = [(accuracy(mean, std), name, mean, std) for name, (mean, std) in COMMON_NORMALIZATIONS.items()
              if not _same_normalization((mean, std), built)]
    best, name, mean, std = max(scores, key=lambda score: score[0])
    if best - applied < PREPROCESSING_MARGIN:
        return None
    return {"images": count, "applied_accuracy": applied, "better": name, "better_accuracy": best, "mean": mean, "std": std}


def _same_normalization(a, b) -> bool:
    (mean_a, std_a), (mean_b, std_b) = a, b
    if mean_a is None or mean_b is None:
        return mean_a is None and mean_b is None
    return bool(np.allclose(mean_a, mean_b, atol=1e-3) and np.allclose(std_a, std_b, atol=1e-3))


def preprocessing_problem(finding: dict, manifest) -> str:
    """The one line verify fails with."""
    fix = (f"--mean {','.join(f'{v:g}' for v in finding['mean'])} --std {','.join(f'{v:g}' for v in finding['std'])}"
           if finding["mean"] is not None else "no --mean/--std")
    return (f"the float model scores {finding['applied_accuracy'] * 100:.1f} % on the first {finding['images']} images with this "
            f"build's preprocessing ({manifest.preprocessing_formula}) but {finding['better_accuracy'] * 100:.1f} % with "
            f"{finding['better']}: the model was trained on other inputs; rebuild with {fix} (or pass "
            "--no-preprocessing-check)")


def trust_flags(model_format: str) -> str:
    """The flags a next command needs to load this model again (the user's own say, repeated in hints)."""
    return {"torchscript": " --trust-torchscript", "pickle": " --trust-pickle"}.get(model_format, "")


def _simulation_runs(opts, fx) -> int:
    """Simulated probabilistic runs: none for an exact build (the secure run equals the reference)."""
    return 0 if fx.protocol.exact else opts.simulate_mpc


def simulate_mpc(graph, fx, x_int, fixed: dict, runs: int, seed: int = 0) -> dict[str, int]:
    """Largest |simulated MPC - reference| per layer (units of 2^-F) over ``runs`` runs of the reference in
    which every truncation rounds up with probability equal to the dropped fraction, as TruncPr does:
    what a real run is likely to show, next to the sound (and very loose) bound."""
    worst = {node.name: 0 for node in graph.nodes}
    for run_index in range(runs):
        trace = Trace(rng=np.random.default_rng(seed + run_index))
        simulated = run_fixed(graph, fx, x_int, trace)
        for node in graph.nodes:
            worst[node.name] = max(worst[node.name], int(np.max(np.abs(simulated[node.name].astype(np.int64) - fixed[node.name].astype(np.int64)))))
    return worst


def float_oracles(graph, model_path: Path, with_onnx: bool):
    """(float per-layer function, onnxruntime oracle or None).

    state_dict: PyTorch forward hooks on the original architecture in float32 (as its users run it; the
    derived tolerances are far above float32 rounding), and onnxruntime on its export.
    ONNX / TorchScript: the IR's float kernels (float64 PyTorch ops on the imported weights), and
    onnxruntime on the user's ONNX file (or the TorchScript module's export)."""
    import onnx
    import torch

    if graph.format == "state_dict":  # channels-last weights: the same network, its convolutions ~1.7x faster here
        module = torch_module(graph.name, model_path).to(memory_format=torch.channels_last)
        oracle = OnnxOracle(export_onnx(module, graph), graph) if with_onnx else None
        return (lambda x: torch_layer_outputs(module, graph, x, dtype=torch.float32)), oracle
    if graph.format == "onnx":
        model = onnx.load(str(model_path))
    elif graph.format == "pickle":  # built with --trust-pickle: the same file, trusted then
        model = export_onnx(torch.load(str(model_path), map_location="cpu", weights_only=False), graph)
    else:
        model = export_onnx(torch.jit.load(str(model_path), map_location="cpu"), graph)
    oracle = OnnxOracle(model, graph, by="tensor") if with_onnx else None
    return (lambda x: run_float(graph, x)), oracle


def with_quantized_weights(graph, fx, dtype=np.float32):
    """The same graph with every parameter replaced by its fixed-point value decoded back to a real
    (round(p * 2^F) / 2^F) in ``dtype``: run in float (inputs in that dtype too), it isolates what weight
    quantization alone costs. float32 holds those values exactly while |p| < 2^(24 - F)."""
    import copy
    import dataclasses

    quantized = copy.copy(graph)
    quantized.nodes = [dataclasses.replace(node, params={k: decode(v, fx.frac_bits).astype(dtype) for k, v in node.qparams.items()})
                       if node.qparams else node for node in graph.nodes]
    return quantized


STAGES = (("float", "float model"), ("float_quantized_weights", "float, weights at 2^-F"),
          ("fixed", "fixed-point reference"))


class StagedAccuracy:
    """Accuracy and argmax agreement at each stage of the export, so that a loss is attributed to weight
    quantization (float -> float with quantized weights) or to activation truncation (-> reference)."""

    def __init__(self):
        self.correct = {key: 0 for key, _ in STAGES}
        self.agree_float = {key: 0 for key, _ in STAGES}
        self.agree_previous = {key: 0 for key, _ in STAGES}
        self.images = 0

    def add(self, labels: np.ndarray, logits: dict[str, np.ndarray]) -> None:
        """logits: stage key -> (N, classes) real logits of the same N images."""
        predicted = {key: np.argmax(logits[key], 1) for key, _ in STAGES}
        previous = None
        for key, _ in STAGES:
            self.correct[key] += int(np.sum(predicted[key] == labels))
            self.agree_float[key] += int(np.sum(predicted[key] == predicted["float"]))
            self.agree_previous[key] += int(np.sum(predicted[key] == predicted[previous or key]))  # the first: itself
            previous = key
        self.images += len(labels)

    def rows(self, exact: bool) -> list[dict]:
        n = max(self.images, 1)
        rows = [{"stage": label, "accuracy": self.correct[key] / n, "agreement_with_float": self.agree_float[key] / n,
                 "agreement_with_previous": self.agree_previous[key] / n} for key, label in STAGES]
        fixed = rows[-1]
        rows.append({"stage": "secure run (predicted)", "accuracy": fixed["accuracy"] if exact else None,
                     "agreement_with_float": fixed["agreement_with_float"] if exact else None,
                     "agreement_with_previous": 1.0 if exact else None,
                     "note": "an exact build's run equals the reference bit for bit (`run` checks it)" if exact else
                             "within the derived bound of the reference (probabilistic truncation); not measured here"})
        return rows


def verify(opts: VerifyOptions, progress=None) -> dict:
    started = time.perf_counter()
    manifest, fx, graph, parsed, model_path = load_reference(opts.directory, opts.model, opts.trust_pickle, opts.trust_torchscript)
    integrity = ["manifest paths relative and inside the directory; every listed file present, its SHA-256 as listed, "
                 "parsed under the runtime's rules with its exact count",
                 "parameter files equal the model quantized afresh"]
    integrity += rederive(opts.directory, manifest, graph, fx, parsed, backend_of(manifest))
    float_model, oracle = float_oracles(graph, model_path, opts.onnx)
    table = LayerTable(graph, fx)
    trace = Trace()
    out_name = graph.output.name
    report: dict = {"directory": str(opts.directory), "model": str(model_path), "integrity": integrity, "backend": manifest.backend,
                    "trust_flags": trust_flags(graph.format),
                    "model_description": manifest.model.description or str(model_path)}

    if opts.dataset:
        seen = onnx_seen = 0
        worst_logit = 0.0
        staged = StagedAccuracy()
        quantized_weights = with_quantized_weights(graph, fx)
        dataset = load_dataset(opts.dataset, graph.input_shape, int(np.prod(graph.output.shape)))
        if progress:  # the total from the start, not after the first batch
            progress(0, len(dataset[0]) if opts.limit is None else min(opts.limit, len(dataset[0])))
        for pixels, yb, total in _batches_from_dataset(dataset, opts.limit, opts.batch):
            xb = graph.preprocess(pixels)
            fixed = run_fixed(graph, fx, encode(xb, fx.frac_bits), trace)
            flt = float_model(xb)
            with_onnx = oracle is not None and seen < opts.onnx_images
            table.add(fixed, flt, oracle.run(xb) if with_onnx else None, xb)
            onnx_seen += len(xb) if with_onnx else 0
            ref_logits, flt_logits = decode(fixed[out_name], fx.frac_bits), flt[out_name]
            staged.add(yb, {"float": flt_logits, "fixed": ref_logits,
                            "float_quantized_weights": run_float(quantized_weights, xb.astype(np.float32))[out_name]})
            worst_logit = max(worst_logit, float(np.abs(ref_logits - flt_logits).max()))
            seen += len(xb)
            if progress:
                progress(seen, total)
        if seen == 0:
            raise UserError(f"{opts.dataset}: no images (check --limit)")
        finding = preprocessing_mismatch(graph, float_model, dataset, opts.limit) if opts.preprocessing_check else None
        report["preprocessing_check"] = finding or ({"ok": True} if opts.preprocessing_check else None)
        report["preprocessing_problem"] = preprocessing_problem(finding, manifest) if finding else None
        stages = staged.rows(fx.protocol.exact)
        report.update(images=seen, float_acc=stages[0]["accuracy"], fixed_acc=stages[2]["accuracy"],
                      agreement=stages[2]["agreement_with_float"], worst_logit_err=worst_logit, dataset=str(opts.dataset),
                      stages=stages, onnx_images=onnx_seen)
    else:
        executions = sorted(manifest.executions, key=lambda e: e.index)
        x_int = [input_values(parsed, e.path, graph.input_shape) for e in executions]
        x_int += [encode(graph.preprocess(load_image(p, graph.input_shape)), fx.frac_bits) for p in opts.inputs]
        x_int = np.stack(x_int)
        x_real = decode(x_int, fx.frac_bits)
        fixed = run_fixed(graph, fx, x_int, trace)
        flt = float_model(x_real)
        table.add(fixed, flt, oracle.run(x_real) if oracle else None, x_real)
        _check_expected_outputs(manifest, graph, parsed, {e.index: {k: v[i] for k, v in fixed.items()} for i, e in enumerate(executions)})
        ref_logits, flt_logits = decode(fixed[out_name], fx.frac_bits), flt[out_name]
        agree = int(np.sum(np.argmax(ref_logits, 1) == np.argmax(flt_logits, 1)))
        report.update(images=len(x_int), onnx_images=len(x_int) if oracle else 0, agreement=agree / len(x_int), float_acc=None, fixed_acc=None,
                      worst_logit_err=float(np.abs(ref_logits - flt_logits).max()),
                      predictions=[{"fixed": int(a), "float": int(b)} for a, b in zip(np.argmax(ref_logits, 1), np.argmax(flt_logits, 1))])
        report["fixed_logits"] = {e.index: [int(v) for v in fixed[out_name][i]] for i, e in enumerate(executions)}
        simulated = simulate_mpc(graph, fx, x_int, fixed, runs) if (runs := _simulation_runs(opts, fx)) else {}

    report["overflow"] = _check_overflow(graph, fx, trace)
    rows = table.rows()
    report["truncation"] = fx.protocol.truncation
    if not opts.dataset and _simulation_runs(opts, fx):
        for row in rows:
            row["simulated_mpc_ulp"] = simulated[row["name"]]
        report["simulated_runs"] = opts.simulate_mpc
    report["layers"] = rows
    report["frac_bits"] = fx.frac_bits
    if opts.mpc_log:
        report["mpc"] = _compare_mpc_log(opts.mpc_log, report.get("fixed_logits", {}), rows[-1]["bound_ulp"])
        if not opts.dataset:
            report["mpc"]["layers"] = _compare_debug_layers(opts.mpc_log, graph, fixed, executions, rows)
            report["mpc"]["ok"] = report["mpc"]["ok"] and all(l["ok"] for l in report["mpc"]["layers"])
            # the earliest layer that differs says where a run went wrong; the logits follow from it
            first_layer = next((l["first_difference"] for l in report["mpc"]["layers"] if l["first_difference"]), None)
            report["mpc"]["first_difference"] = first_layer or report["mpc"]["first_difference"]
    report["min_agreement"] = opts.min_agreement
    report["agreement_ok"] = report["agreement"] >= opts.min_agreement
    report["preprocessing"] = manifest.preprocessing_formula
    report["ok"] = (all(r["ok"] for r in rows) and report.get("mpc", {}).get("ok", True) and report["agreement_ok"]
                    and report.get("preprocessing_problem") is None)
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def _compare_debug_layers(path: Path, graph, fixed: dict, executions: list, rows: list) -> list[dict]:
    """Per layer printed by a --debug program: max |MPC - reference| (units of 2^-F) vs its bound."""
    from ..backends.mamba.render import Layout

    logged = parse_debug_log(path)
    bounds = {r["name"]: r["bound_ulp"] for r in rows}
    out = []
    for node in graph.nodes[1:]:
        ident = Layout.ident(node)
        worst, count, first = 0, 0, None
        for i, e in enumerate(executions):
            values = logged.get((e.index, ident))
            if not values:
                continue
            dense = node.spec.debug_print == "vector"  # printed as one row of values
            ref = fixed[node.name][i].reshape((1, 1, -1) if dense else node.shape)
            for (c, y, x), v in sorted(values.items()):
                diff = abs(v - int(ref[c, y, x]))
                if diff > bounds[node.name] and first is None:
                    where = f"element {x}" if dense else f"element (c={c}, y={y}, x={x})"
                    first = f"execution {e['index']}, layer {node.name}, {where}: MPC {v}, reference {int(ref[c, y, x])}"
                worst = max(worst, diff)
                count += 1
        if count:
            out.append({"name": node.name, "values": count, "max_ulp_err": worst, "bound_ulp": bounds[node.name],
                        "ok": worst <= bounds[node.name], "first_difference": first})
    return out


def _compare_mpc_log(path: Path, fixed_logits: dict, bound: int) -> dict:
    """The logits a real run printed against the reference: equal (bound 0) for an exact build, within the
    bound for a probabilistic one; the first logit beyond it is named."""
    logged = parse_mpc_log(path)
    worst, first = 0, None
    for execution, values in sorted(logged.items()):
        if execution not in fixed_logits:
            raise VerificationFailed(f"{path}: execution {execution} is not one of this build's executions")
        ref = fixed_logits[execution]
        if sorted(values) != list(range(len(ref))):
            raise VerificationFailed(f"{path}: execution {execution} printed logits {sorted(values)}, expected 0..{len(ref) - 1}")
        for j, v in sorted(values.items()):
            if abs(v - ref[j]) > bound and first is None:
                first = f"execution {execution}, logit {j}: MPC {v}, reference {ref[j]}"
            worst = max(worst, abs(v - ref[j]))
    return {"executions": sorted(logged), "max_ulp_err": worst, "bound_ulp": bound, "ok": worst <= bound,
            "first_difference": first}
