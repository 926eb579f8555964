"""`mpc-export build`: model file -> deployment directory (the stages in order, nothing half-written)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backends import DEFAULT, backend_named
from ..export.products import data_products
from ..errors import UserError
from ..export.channels import load_channel_map
from ..export.plan import data_folder, input_file, parameter_files, pattern_file
from ..export.tokens import check_format
from ..export.writer import StagingDir, sha256_file, write_manifest, write_text
from ..fold import lower_for_mpc
from ..ops import Comparison
from ..load import load_model
from ..load.images import demo_image, load_image
from ..fixedpoint import FixedSpec, bits_of, encode
from ..quantize.graph import Budget, quantize_graph, stage_budgets
from ..reference.run import Trace, run_fixed


@dataclass
class BuildOptions:
    model: Path
    out: Path
    inputs: list[Path] = field(default_factory=list)
    fx: FixedSpec = field(default_factory=FixedSpec)
    number_format: str = "decimal"
    channel_map: Path | None = None
    force: bool = False
    debug: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    trust_pickle: bool = False
    trust_torchscript: bool = False
    calibrate: Path | None = None  # a data set (.npz, as verify --dataset) to set comparison widths from
    calibrate_limit: int | None = None  # its first N images
    margin_bits: int = 4  # calibrated limit = bits of the calibrated peak + this margin
    backend: str = DEFAULT  # the runtime the program is for (backends.names())
    protocol: str | None = None  # the backend's protocol (mp-spdz: backends.mpspdz.PROTOCOLS), None: its default


def check_calibration(budget, trace: Trace, graph, fx, what: str) -> None:
    """Fill the calibrated peaks; refuse an actual overflow on the data being built."""
    for node, stage, peak in trace.stage_peaks(graph, fx):
        budget.stage(node, stage.name).calibrated = peak
        if peak >= 2**stage.limit_bits:
            raise UserError(
                f"{what} overflow at {node} ({stage.name}): |value| needs {bits_of(peak):.1f} bits, the "
                f"budget is {stage.limit_bits} bits; raise --total-bits or lower --frac-bits"
            )


def calibrate(graph, fx: FixedSpec, dataset: Path, limit: int | None, margin_bits: int) -> tuple[FixedSpec, dict]:
    """Run the reference over the calibration images and narrow every comparison whose stage's peak, plus
    margin_bits, fits fewer bits than its worst-case width: the FixedSpec to build with (its protocol's
    comparison_limits) and the manifest's record of it. verify --dataset on other images fails on any
    value beyond a calibrated limit."""
    from dataclasses import replace

    from .verify import _batches_from_dataset, load_dataset

    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    if not 0 <= margin_bits <= 32:
        raise UserError(f"--margin-bits must be between 0 and 32, got {margin_bits}")
    data = load_dataset(dataset, graph.input_shape, int(np.prod(graph.output.shape)))
    trace, images = Trace(), 0
    for pixels, _, _ in _batches_from_dataset(data, limit, 250):
        run_fixed(graph, fx, encode(graph.preprocess(pixels), fx.frac_bits), trace)
        images += len(pixels)
    limits = []
    for node in graph.nodes:
        if not node.spec.executable:
            continue
        for step in node.spec.schedule(node, fx).steps:
            if not isinstance(step, Comparison):  # only comparisons are narrowed
                continue
            calibrated = int(trace.peaks.get((node.name, step.stage), 0)).bit_length() + margin_bits
            if calibrated < step.limit_bits:
                limits.append((node.name, step.stage, calibrated))
    protocol = replace(fx.protocol, comparison_limits=tuple(sorted(set(limits))))
    record = {"dataset": str(dataset), "sha256": sha256_file(Path(dataset)), "images": images, "margin_bits": margin_bits,
              "narrowed": len(protocol.comparison_limits)}
    return replace(fx, protocol=protocol), record


def preprocessing_source(model_format: str, from_command_line: bool) -> str:
    """Where the build's preprocessing comes from: "command line" (--mean/--std), "architecture" (a known
    architecture's state_dict: its training recipe's), or "assumed" (an ONNX, TorchScript or pickled model
    records no input normalization: pixel / 255 unless --mean/--std say otherwise)."""
    if from_command_line:
        return "command line"
    return "architecture" if model_format == "state_dict" else "assumed"


ASSUMED_PREPROCESSING = ("assumed: {format} model does not record its input normalization; if it was trained on "
                         "normalized images pass --mean M,M,M --std S,S,S (verify --dataset fails when a common "
                         "normalization suits the model far better)")


def apply_preprocessing(graph, mean, std) -> None:
    """--mean/--std override the architecture's defaults (both or neither; one value per channel)."""
    if mean is None and std is None:
        return
    if mean is None or std is None:
        raise UserError("--mean and --std go together")
    channels = graph.input_shape[0]
    if len(mean) != channels or len(std) != channels:
        raise UserError(f"--mean and --std need {channels} values each (one per input channel)")
    if any(not np.isfinite(v) for v in (*mean, *std)) or any(v <= 0 for v in std):
        raise UserError("--std values must be positive and --mean/--std finite")
    graph.mean, graph.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)


def build(opts: BuildOptions, progress=None) -> dict:
    started = time.perf_counter()
    fx = opts.fx
    fx.validate()
    backend = backend_named(opts.backend).with_protocol(opts.protocol)
    backend.check_options(fx, opts.debug)
    check_format(opts.number_format, fx.frac_bits, fx.reading_precision)
    cmap = load_channel_map(opts.channel_map)
    if len(opts.inputs) > cmap.max_inputs:
        raise UserError(f"{len(opts.inputs)} inputs given; the channel map has {cmap.max_inputs} input channels (one per execution)")
    output = StagingDir(opts.out, opts.force, protected=[opts.model, *opts.inputs, *(p for p in (opts.calibrate, opts.channel_map) if p)])
    output.check()  # fail fast, before loading; checked again at commit

    float_graph = load_model(opts.model, trust_pickle=opts.trust_pickle, trust_torchscript=opts.trust_torchscript)
    apply_preprocessing(float_graph, opts.mean, opts.std)
    graph, passes = lower_for_mpc(float_graph)
    budget = quantize_graph(graph, fx)
    calibration = None
    if opts.calibrate is not None:
        fx, calibration = calibrate(graph, fx, opts.calibrate, opts.calibrate_limit, opts.margin_bits)
        budget = Budget(stages=stage_budgets(graph, fx), tensors=budget.tensors)  # the stage limits follow the calibrated comparisons
    backend.check_graph(graph, fx)  # after calibration: the widths the program declares
    params = parameter_files(graph, cmap)
    pattern = pattern_file(graph, fx, cmap, params)

    images = [load_image(p, graph.input_shape) for p in opts.inputs] or [demo_image(graph.input_shape)]
    sources = [str(p) for p in opts.inputs] or ["demo pattern"]
    x_int = encode(graph.preprocess(np.stack(images)), fx.frac_bits)
    trace = Trace()
    outputs = run_fixed(graph, fx, x_int, trace)
    check_calibration(budget, trace, graph, fx, "the inputs being built:")
    inputs = [input_file(graph, cmap, n) for n in range(len(images))]

    files = []
    with output as staging:
        root = staging.path
        products = (data_products(graph, fx, opts.number_format, params, inputs, x_int, outputs, sources, pattern)
                    + backend.program_products(graph, fx, params, inputs, x_int, opts.debug, pattern))
        for product in products:
            files.append({**write_text(root, product.path, product.text, executable=product.executable), **product.entry})
            if progress and product.entry.get("role") == "parameter":
                progress(product.entry["tensor"])
        specific = backend.manifest_fields(graph, fx, params, inputs, pattern, opts.debug)
        for entry in files:  # a file written in its own format (the pattern: raw integers) says so already
            entry.update(frac_bits=fx.frac_bits, total_bits=fx.total_bits, reading_precision=fx.reading_precision,
                         number_format=entry.get("number_format", opts.number_format))
        manifest = {
            **({"backend": backend.name} if backend.name != DEFAULT else {}),  # absent: a FANNG build, as before backends
            "model": {"path": str(opts.model.resolve()), "sha256": sha256_file(opts.model), "architecture": graph.name,
                      "format": float_graph.format,
                      "description": float_graph.description, "parameters": float_graph.parameter_count(), "macs": float_graph.macs()},
            "fixed_point": {"frac_bits": fx.frac_bits, "total_bits": fx.total_bits, "kappa": fx.kappa,
                            "prime_bits": fx.prime_bits, "reading_precision": fx.reading_precision,
                            "number_format": opts.number_format},
            # the choices the program was generated with; verify and run read them
            "protocol": fx.protocol.as_dict(),
            "disclosure": fx.protocol.disclosure(opts.debug),
            "calibration": calibration,
            "preprocessing": {"scale": "pixels / 255", "mean": graph.mean, "std": graph.std,
                              "source": preprocessing_source(float_graph.format, opts.mean is not None),
                              "formula": "(pixel / 255 - mean[c]) / std[c], then round(x * 2^F)" if graph.mean else "pixel / 255, then round(x * 2^F)"},
            "data_folder": data_folder(graph),
            "program": specific.pop("program"),
            "channel_map": cmap.as_dict(),
            "channel_open_order": specific.pop("channel_open_order"),
            "passes": [{"pass": n, "rewrites": c} for n, c in passes],
            "notices": list(float_graph.notices),
            # how each convolution is computed (FANNG: winograd where it applies, else direct; public sparsity)
            "convolution_modes": {n.name: n.spec.mode(n, fx) if backend.name == DEFAULT else "dot products"
                                  for n in graph.nodes if n.op == "conv_block"},
            "layers": [{"name": n.name, "op": n.op, "shape": list(n.shape), "origin": n.origin} for n in graph.nodes],
            "budget": {"tensors": budget.tensors, "stages": [s.as_dict() for s in budget.stages]},
            "cost": specific.pop("cost"),
            "input_values_per_channel": {str(f["channel"]): f["count"] for f in files if "channel" in f},
            "executions": [{"index": i.execution, "channel": i.channel, "path": i.path, "source": sources[i.execution],
                            "logits": [int(v) for v in outputs[graph.output.name][i.execution]],
                            "predicted_class": int(np.argmax(outputs[graph.output.name][i.execution]))} for i in inputs],
            "files": files,
            **specific,  # the backend's own entries
        }
        write_manifest(root, manifest)
        staging.commit()
    manifest["build_seconds"] = round(time.perf_counter() - started, 2)
    manifest["out"] = str(opts.out)
    return manifest
