"""manifest.json as typed records: what `verify`, `run`, `cost`, `bundle` and the backends read from a build
directory. ``Manifest.from_dict`` checks every key they read, with its JSON type, and refuses a missing or
mistyped one in one line (``VerificationFailed``); nothing downstream indexes the JSON by string key. The
JSON on disk is written by ``pipeline/build.py`` and is unchanged by this reading of it.

A manifest comes from the build directory, that is from whoever handed it over: it is data, never trusted
for what may execute (the trust flags come from the command line) and its paths are checked
(``verify/rederive.check_paths``) before any file is opened."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import VerificationFailed
from .fixedpoint import FixedSpec, Protocol

DEFAULT_BACKEND = "fanng"  # a manifest without "backend" was written for FANNG-MPC
CHECKED_ROLES = ("parameter", "sparsity_pattern", "input", "expected_output")  # data files parsed under the runtime's rules


def _is(value, kind) -> bool:
    """isinstance for JSON values, where a bool is not an int."""
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _optional(record: Mapping, key: str, kind, where: str):
    value = record.get(key)
    if value is not None and not _is(value, kind):
        raise VerificationFailed(f"manifest.json: {where}.{key} is not a {kind.__name__}")
    return value


@dataclass(frozen=True)
class TensorEntry:
    """One tensor inside a parameter file: ``count`` values from ``offset``, in ``layout`` order."""

    tensor: str
    node: str
    param: str
    shape: tuple[int, ...]
    layout: str
    offset: int
    count: int

    @classmethod
    def from_dict(cls, record, where: str) -> "TensorEntry":
        if not isinstance(record, dict):
            raise VerificationFailed(f"manifest.json: {where} is not an object")
        for key, kind in (("tensor", str), ("node", str), ("param", str), ("offset", int), ("count", int)):
            if not _is(record.get(key), kind):
                raise VerificationFailed(f"manifest.json: {where}.{key} is missing or not a {kind.__name__}")
        shape = record.get("shape")
        if not isinstance(shape, list) or not all(_is(v, int) for v in shape):
            raise VerificationFailed(f"manifest.json: {where}.shape is not a list of integers")
        return cls(record["tensor"], record["node"], record["param"], tuple(shape), str(record.get("layout", "")),
                   record["offset"], record["count"])


@dataclass(frozen=True)
class FileEntry:
    """One file the build wrote: path relative to the build directory, its role (parameter, input,
    expected_output, sparsity_pattern, program, io_answers, ... and the backends' own), SHA-256 and size,
    and for data files how the runtime reads them (``reading_precision``, ``count`` values)."""

    path: str
    role: str
    sha256: str | None = None
    reading_precision: int | None = None
    count: int | None = None
    channel: int | None = None
    execution: int | None = None
    tensor: str | None = None
    tensors: tuple[TensorEntry, ...] = ()

    @property
    def where(self) -> str:
        """The path, and the channel where it has one: how messages name the file."""
        return f"{self.path}, channel {self.channel}" if self.channel is not None else self.path

    @classmethod
    def from_dict(cls, record, index: int) -> "FileEntry":
        if not isinstance(record, dict) or not isinstance(record.get("path"), str) or not isinstance(record.get("role"), str):
            raise VerificationFailed(f"manifest.json: files[{index}] needs a path and a role")
        where = f"files[{index}]"
        if record["role"] in CHECKED_ROLES and not (isinstance(record.get("sha256"), str) and _is(record.get("reading_precision"), int)):
            raise VerificationFailed(f"manifest.json: {where} ({record['path']}) needs sha256 and reading_precision")
        tensors = record.get("tensors", []) if record["role"] == "parameter" else []
        if not isinstance(tensors, list):
            raise VerificationFailed(f"manifest.json: {where}.tensors is not a list")
        return cls(record["path"], record["role"], _optional(record, "sha256", str, where),
                   _optional(record, "reading_precision", int, where), _optional(record, "count", int, where),
                   _optional(record, "channel", int, where), _optional(record, "execution", int, where),
                   _optional(record, "tensor", str, where),
                   tuple(TensorEntry.from_dict(t, f"{where}.tensors[{i}]") for i, t in enumerate(tensors)))


@dataclass(frozen=True)
class Execution:
    """One execution (one input image): its input file and, as built, the reference logits (units of 2^-F)."""

    index: int
    path: str
    source: str = ""
    logits: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, record, index: int) -> "Execution":
        if not isinstance(record, dict) or not _is(record.get("index"), int) or not isinstance(record.get("path"), str):
            raise VerificationFailed(f"manifest.json: executions[{index}] needs an index and a path")
        logits = record.get("logits", [])
        if not isinstance(logits, list) or not all(_is(v, int) for v in logits):
            raise VerificationFailed(f"manifest.json: executions[{index}].logits is not a list of integers")
        return cls(record["index"], record["path"], str(record.get("source", "")), tuple(logits))


@dataclass(frozen=True)
class ModelRecord:
    path: str
    sha256: str
    description: str = ""


@dataclass(frozen=True)
class ProgramRecord:
    """The program file (``path`` relative to the build directory) and its name (an identifier the
    backends check before using it)."""

    name: str
    path: str
    debug: bool = False


@dataclass(frozen=True)
class Manifest:
    backend: str
    model: ModelRecord
    fixed_spec: FixedSpec  # the fixed-point format and protocol choices the program was generated with
    number_format: str
    mean: tuple[float, ...] | None  # preprocessing: (pixel / 255 - mean[c]) / std[c]
    std: tuple[float, ...] | None
    data_folder: str
    program: ProgramRecord
    channel_map: Mapping[str, Any]  # export.channels.channel_map_from_manifest reads it
    cost: Mapping[str, Any]  # the cost report: "layers" (rows), "totals", "options", ... (the backend's cost module)
    executions: tuple[Execution, ...]
    files: tuple[FileEntry, ...]
    input_values_per_channel: Mapping[str, int] = field(default_factory=dict)
    backend_record: Mapping[str, Any] = field(default_factory=dict)  # the backend's own entry (e.g. "mp_spdz")

    @property
    def preprocessing_formula(self) -> str:
        """How the build turns pixels into the model's input, in words."""
        if self.mean is None:
            return "pixel / 255"
        return (f"(pixel / 255 - mean) / std, mean {', '.join(f'{v:g}' for v in self.mean)}, "
                f"std {', '.join(f'{v:g}' for v in self.std)}")

    def files_of_role(self, role: str) -> list[FileEntry]:
        return [entry for entry in self.files if entry.role == role]

    @classmethod
    def from_dict(cls, data) -> "Manifest":
        """The typed manifest, or VerificationFailed naming the first key that is missing or mistyped."""
        if not isinstance(data, dict):
            raise VerificationFailed("manifest.json: not a JSON object")
        for key, kind in REQUIRED.items():
            if not isinstance(data.get(key), kind):
                hint = " (a build from an older mpc-export? rebuild it)" if key == "protocol" else ""
                raise VerificationFailed(f"manifest.json: {key!r} is missing or not a {kind.__name__}{hint}")
        for key, fields in REQUIRED_IN.items():
            for name, kind in fields.items():
                if not _is(data[key].get(name), kind):
                    raise VerificationFailed(f"manifest.json: {key}.{name} is missing or not a {kind.__name__}")
        backend = data.get("backend", DEFAULT_BACKEND)
        if not isinstance(backend, str):
            raise VerificationFailed("manifest.json: backend is not a string")
        files = tuple(FileEntry.from_dict(entry, i) for i, entry in enumerate(data["files"]))
        executions = tuple(Execution.from_dict(entry, i) for i, entry in enumerate(data["executions"]))
        if not executions:
            raise VerificationFailed("manifest.json: executions is empty (a build writes at least one)")
        f, p = data["fixed_point"], data["program"]
        try:
            protocol = Protocol.from_dict(data["protocol"])
        except (TypeError, ValueError, KeyError) as exc:
            raise VerificationFailed(f"manifest.json: protocol is not one build writes ({exc})") from None
        spec = FixedSpec(f["frac_bits"], f["total_bits"], f["kappa"], f["prime_bits"], f["reading_precision"], protocol)
        pre = data.get("preprocessing") or {}
        mean, std = pre.get("mean"), pre.get("std")
        if mean is not None or std is not None:
            if not (isinstance(mean, list) and isinstance(std, list) and all(_is(v, (int, float)) for v in mean + std)):
                raise VerificationFailed("manifest.json: preprocessing.mean and .std must be lists of numbers")
            mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        values = data.get("input_values_per_channel", {})
        return cls(backend=backend,
                   model=ModelRecord(data["model"]["path"], data["model"]["sha256"], str(data["model"].get("description", ""))),
                   fixed_spec=spec, number_format=f["number_format"], mean=mean, std=std, data_folder=data["data_folder"],
                   program=ProgramRecord(p["name"], p["path"], bool(p.get("debug", False))),
                   channel_map=data["channel_map"], cost=data["cost"], executions=executions, files=files,
                   input_values_per_channel=values if isinstance(values, dict) else {},
                   backend_record=data.get("mp_spdz", {}) if isinstance(data.get("mp_spdz", {}), dict) else {})


# the keys the commands read, with the JSON type each must have
REQUIRED = {"model": dict, "fixed_point": dict, "protocol": dict, "files": list, "program": dict, "executions": list,
            "channel_map": dict, "data_folder": str, "cost": dict}
REQUIRED_IN = {"model": {"path": str, "sha256": str}, "program": {"name": str, "path": str},
               "fixed_point": {"frac_bits": int, "total_bits": int, "kappa": int, "prime_bits": int,
                               "reading_precision": int, "number_format": str}}
