"""Channel map: which reserved IO channel, file and folder each tensor uses (channel_map.toml)."""

from __future__ import annotations

import re

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

DEFAULT_MAP = Path(__file__).resolve().parent / "channel_map.toml"  # the seed table, shipped in the package
SPARSITY_PATTERN_CHANNEL = 100048  # the public sparsity pattern's channel when a map names none (the seed table's)
KIND_FOLDERS = {"weight": "weights", "bias": "bias", "new_gamma": "new_gamma", "new_beta": "new_beta"}


def tensor_name(node_name: str, param: str) -> str:
    """Seed naming: new_gamma / new_beta of conv_layer_i are bn_layer_i_new_gamma / _new_beta."""
    if param in ("new_gamma", "new_beta"):
        return f"{node_name.replace('conv_layer', 'bn_layer')}_{param}"
    return f"{node_name}_{param}"


@dataclass
class ChannelMap:
    parameters: dict[str, int]
    parameter_range: tuple[int, int]
    reserved: tuple[int, int]
    input_range: tuple[int, int]
    kinds: list[str]
    source: str
    packed: dict[str, int] | None = None
    sparsity_pattern: int = SPARSITY_PATTERN_CHANNEL  # the public sparsity pattern's channel (--sparsity public)

    def input_channel(self, execution: int) -> int:
        return self.input_range[0] + execution

    @property
    def capacity(self) -> int:
        """Parameter channels available for one tensor each (the range minus the reserved ones)."""
        lo, hi = self.parameter_range
        reserved = max(0, min(hi, self.reserved[1]) - max(lo, self.reserved[0]) + 1)
        return hi - lo + 1 - reserved

    @property
    def max_inputs(self) -> int:
        return self.input_range[1] - self.input_range[0] + 1

    def as_dict(self) -> dict:
        return {"source": self.source, "parameters": self.parameters, "parameter_range": list(self.parameter_range),
                "reserved": list(self.reserved), "input_range": list(self.input_range), "kinds": self.kinds,
                "packed": self.packed, "sparsity_pattern": self.sparsity_pattern}


def _pair(table: dict, key: str, where: str) -> tuple[int, int]:
    value = table.get(key)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and value[0] <= value[1]):
        raise UserError(f"{where}: [ranges] {key} must be [first, last] channel numbers")
    return value[0], value[1]


def load_channel_map(path: str | Path | None = None) -> ChannelMap:
    path = Path(path) if path else DEFAULT_MAP
    if path.exists() and not path.is_file():
        raise UserError(f"channel map {path} is not a file")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"channel map not found: {path}") from None
    except OSError as exc:
        raise UserError(f"channel map {path}: cannot read it: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    return channel_map_from_data(data, path)


def channel_map_from_manifest(recorded: dict) -> ChannelMap:
    """The channel map a build recorded (manifest.json's channel_map), validated as a file would be."""
    if not isinstance(recorded, dict):
        raise UserError("manifest.json: channel_map must be an object")
    data = {"ranges": {"parameters": recorded.get("parameter_range"), "inputs": recorded.get("input_range")},
            "order": {"kinds": recorded.get("kinds", list(KIND_FOLDERS))}, "parameters": recorded.get("parameters")}
    if recorded.get("reserved") is not None and recorded["reserved"] != [0, -1]:
        data["ranges"]["reserved"] = recorded["reserved"]
    if recorded.get("packed") is not None:
        data["packed"] = recorded["packed"]
    if recorded.get("sparsity_pattern") is not None:
        data["public"] = {"sparsity_pattern": recorded["sparsity_pattern"]}
    return channel_map_from_data(data, recorded.get("source", "manifest.json channel_map"))


def channel_map_from_data(data: dict, path) -> ChannelMap:
    """Validate a channel map's content (parsed TOML, or what a manifest recorded)."""
    ranges = data.get("ranges", {})
    if not isinstance(ranges, dict):
        raise UserError(f"{path}: [ranges] must be a table")
    params_range = _pair(ranges, "parameters", str(path))
    reserved = _pair(ranges, "reserved", str(path)) if "reserved" in ranges else (0, -1)
    inputs = _pair(ranges, "inputs", str(path))
    for label, (lo, hi) in (("parameters", params_range), ("inputs", inputs), ("reserved", reserved)):
        if lo > hi:
            continue
        if lo < 1 or hi >= 2**32:
            raise UserError(f"{path}: [ranges] {label} must be channel numbers from 1 to 2^32 - 1 (channel 0 is the console)")
    if not (inputs[1] < params_range[0] or inputs[0] > params_range[1]):
        raise UserError(f"{path}: [ranges] inputs {inputs[0]}-{inputs[1]} overlap the parameter range {params_range[0]}-{params_range[1]}")
    if reserved[0] <= reserved[1] and not (inputs[1] < reserved[0] or inputs[0] > reserved[1]):
        raise UserError(f"{path}: [ranges] inputs {inputs[0]}-{inputs[1]} overlap the reserved range {reserved[0]}-{reserved[1]}")
    order = data.get("order", {})
    if not isinstance(order, dict):
        raise UserError(f"{path}: [order] must be a table (kinds = [\"weight\", ...]), got {str(order)[:40]!r}")
    kinds = order.get("kinds", list(KIND_FOLDERS))
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise UserError(f"{path}: [order] kinds must be a list of names")
    if sorted(kinds) != sorted(KIND_FOLDERS):
        raise UserError(f"{path}: [order] kinds must list {', '.join(KIND_FOLDERS)} once each")
    params = data.get("parameters")
    if not isinstance(params, dict) or not params:
        raise UserError(f"{path}: [parameters] must map tensor names to channels")
    seen: dict[int, str] = {}
    for name, channel in params.items():
        if not isinstance(channel, int) or isinstance(channel, bool):
            raise UserError(f"{path}: channel of {name} must be an integer, got {channel!r}")
        if channel in seen:
            raise UserError(f"{path}: channel {channel} is used twice ({seen[channel]} and {name})")
        if not params_range[0] <= channel <= params_range[1]:
            raise UserError(f"{path}: channel {channel} of {name} is outside the parameter range {params_range[0]}-{params_range[1]}")
        if reserved[0] <= channel <= reserved[1]:
            raise UserError(f"{path}: channel {channel} of {name} is reserved ({reserved[0]}-{reserved[1]})")
        if inputs[0] <= channel <= inputs[1]:
            raise UserError(f"{path}: channel {channel} of {name} collides with the input channels")
        seen[channel] = name
    packed = data.get("packed")
    if packed is not None:
        if not isinstance(packed, dict) or sorted(packed) != sorted(KIND_FOLDERS):
            raise UserError(f"{path}: [packed] must give one channel for each of {', '.join(KIND_FOLDERS)}")
        used: dict[int, str] = {}
        for kind, channel in packed.items():
            if not isinstance(channel, int) or not params_range[0] <= channel <= params_range[1] or reserved[0] <= channel <= reserved[1]:
                raise UserError(f"{path}: [packed] channel {channel!r} of {kind} is not a usable parameter channel")
            if channel in used:
                raise UserError(f"{path}: [packed] channel {channel} is used twice ({used[channel]} and {kind})")
            used[channel] = kind
    public = data.get("public", {})
    pattern_channel = public.get("sparsity_pattern", SPARSITY_PATTERN_CHANNEL) if isinstance(public, dict) else None
    if not (isinstance(pattern_channel, int) and not isinstance(pattern_channel, bool) and 1 <= pattern_channel < 2**32):
        raise UserError(f"{path}: [public] sparsity_pattern must be a channel number from 1 to 2^32 - 1")
    return ChannelMap(dict(params), params_range, reserved, inputs, list(kinds), str(path), packed, pattern_channel)


def _beyond_table(cmap: ChannelMap, tensor: str) -> bool | None:
    """For a tensor named <kind>_layer_<i>_<param>: whether the table names that kind and param only for
    layers below i (True) or also above it (False: a gap); None for other names."""
    match = re.fullmatch(r"(.+_layer)_(\d+)_(.+)", tensor)
    if match is None:
        return None
    prefix, index, param = match.group(1), int(match.group(2)), match.group(3)
    named = [int(m.group(1)) for name in cmap.parameters
             if (m := re.fullmatch(re.escape(prefix) + r"_(\d+)_" + re.escape(param), name))]
    return all(i < index for i in named)


def check_covers(cmap: ChannelMap, tensors: list[str]) -> bool:
    """True when every tensor has its own channel; False when the packed rule must be used: the model
    has more tensors than the table has channels, or layers beyond the table's (e.g. a third linear
    layer on the seed table). A gap in the table (it names layer 3's bias but not layer 2's) is an error:
    a mistyped map, not a bigger model."""
    missing = [t for t in tensors if t not in cmap.parameters]
    gaps = [t for t in missing if _beyond_table(cmap, t) is False]
    if missing and not gaps and cmap.packed is not None:
        return False
    if gaps:
        missing = gaps
    if missing:
        raise UserError(f"{cmap.source}: no channel for tensor {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return True  # entries for tensors the model lacks (a smaller model on the seed table) stay unused
