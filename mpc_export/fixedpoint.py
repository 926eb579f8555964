"""Fixed-point semantics, in one place.

An ``sfix`` value x is held as an integer v with x = v / 2^frac_bits ("scale 2^F"). Products of two
values are at scale 2^2F, and so on. ``encode`` rounds half away from zero (C ``round``), as the runtime
does for decimal tokens. The reference truncates with ``floor`` (an arithmetic shift); the MPC program's
``TruncPr`` returns that floor or the floor plus one, so each truncation may add one unit of 2^-F.

Budget: a value the program compares or stores needs |v| < 2^(K-1); a value fed to a truncation with bit
length k needs |v| < 2^(k-1); the field (a 128-bit prime for FANNG-MPC) needs 2K + kappa + 1 bits.

The truncation schedule of each operator (where it truncates, by how much, with which protocol) is
declared once in its ``schedule`` (``mpc_export/ops``); this module only holds the primitives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UserError

INT64_SAFE_BITS = 62  # |v| < 2^62: sums of two such values still fit int64
FLOAT64_EXACT_BITS = 53


TRUNCATION_MODES = ("exact", "probabilistic")
CONVOLUTION_MODES = ("winograd", "direct")
WEIGHT_MODES = ("private", "public")
SPARSITY_MODES = ("private", "public")


@dataclass(frozen=True)
class Protocol:
    """The protocol choices a program is generated with (manifest.json's ``protocol`` object).

    truncation: "exact" (``AdvInteger.Trunc``: the floor, so the secure run equals the reference bit for
    bit) or "probabilistic" (``TruncPr``: the floor or the floor + 1, FANNG's cheaper schedule).
    convolution: "winograd" (F(2x2, 3x3) with integer-scaled transforms for every 3x3, stride-1, pad-1
    convolution on an even map: 16 secret products per 2x2 output tile instead of 36, the result exactly
    4x the direct one, truncated by 2 more bits: the same floor) or "direct".
    weights: "private" (player 0's secret input) or "public" (every player reads the same parameter
    files as public values: every product with a weight is local; the model is revealed, the input stays
    secret).
    sparsity: "private" (every product of a convolution is computed, zero weight or not) or "public" (the
    positions of the non-zero weights are public data the program reads at run time, and the products by a
    zero weight are skipped: the pruning pattern is revealed, the weights' values stay secret).
    comparison_limits: ((node, stage, limit_bits), ...) from ``build --calibrate``: each listed stage's
    values are taken to satisfy |v| < 2^limit_bits (the calibrated peak plus a margin), and the
    comparisons on it (LTZ) are that much narrower; empty: every comparison at its worst-case width."""

    truncation: str = "exact"
    convolution: str = "winograd"
    weights: str = "private"
    comparison_limits: tuple = ()
    sparsity: str = "private"

    def validate(self) -> None:
        if self.truncation not in TRUNCATION_MODES:
            raise UserError(f"--truncation must be one of {', '.join(TRUNCATION_MODES)}, got {self.truncation!r}")
        if self.convolution not in CONVOLUTION_MODES:
            raise UserError(f"--convolution must be one of {', '.join(CONVOLUTION_MODES)}, got {self.convolution!r}")
        if self.weights not in WEIGHT_MODES:
            raise UserError(f"--weights must be one of {', '.join(WEIGHT_MODES)}, got {self.weights!r}")
        if self.sparsity not in SPARSITY_MODES:
            raise UserError(f"--sparsity must be one of {', '.join(SPARSITY_MODES)}, got {self.sparsity!r}")
        if self.public_sparsity and self.public_weights:
            raise UserError("--sparsity public needs --weights private: with public weights every product with a weight "
                            "is already local, so a public pattern would save nothing")

    @property
    def exact(self) -> bool:
        return self.truncation == "exact"

    @property
    def public_weights(self) -> bool:
        return self.weights == "public"

    @property
    def public_sparsity(self) -> bool:
        return self.sparsity == "public"

    def limits_for(self, node: str) -> dict[str, int]:
        """{stage: limit_bits} calibrated for the node's comparisons (empty: none)."""
        return {stage: bits for name, stage, bits in self.comparison_limits if name == node}

    def as_dict(self) -> dict:
        limits: dict[str, dict[str, int]] = {}
        for node, stage, bits in self.comparison_limits:
            limits.setdefault(node, {})[stage] = bits
        return {"truncation": self.truncation, "convolution": self.convolution, "weights": self.weights,
                "sparsity": self.sparsity, "comparison_limits": limits}

    @classmethod
    def from_dict(cls, recorded) -> "Protocol":
        """The protocol a manifest records; keys added later default to what builds did before them
        (private weights, private sparsity, no calibrated comparison limits). Anything else is one clear error."""
        keys = set(cls().as_dict())
        if not isinstance(recorded, dict) or not {"truncation", "convolution"} <= set(recorded) <= keys:
            raise UserError(f"manifest.json: protocol must be an object with the keys {', '.join(sorted(keys))}, "
                            f"got {recorded!r}")
        limits = recorded.get("comparison_limits", {})
        if not isinstance(limits, dict) or not all(
                isinstance(stages, dict) and all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 256
                                                 for b in stages.values()) for stages in limits.values()):
            raise UserError(f"manifest.json: protocol.comparison_limits must map nodes to {{stage: bits}}, got {limits!r}")
        protocol = cls(recorded["truncation"], recorded["convolution"], recorded.get("weights", "private"),
                       tuple(sorted((str(n), str(s), int(b)) for n, stages in limits.items() for s, b in stages.items())),
                       recorded.get("sparsity", "private"))
        protocol.validate()
        return protocol

    def disclosure(self, debug: bool) -> str:
        """What each party learns beyond the output, in one plain sentence."""
        printed = "every layer's output (a --debug build: for testing only)" if debug else "the logits the program prints"
        if self.public_weights:
            return (f"Every player learns the model: its weights, biases and BN factors (public weights) and the program; "
                    f"players 1 and 2 also learn {printed}; the input stays secret ({self.truncation} truncation and "
                    f"{self.convolution} convolutions reveal nothing more).")
        if self.public_sparsity:
            return (f"Players 1 and 2 learn the program (the architecture and the tensor shapes), {printed} and the sparsity "
                    f"pattern (public sparsity: which weights of each convolution are zero, hence how many are not); the weights' "
                    f"values and the input stay secret ({self.truncation} truncation and {self.convolution} convolutions reveal "
                    f"nothing more).")
        return (f"Players 1 and 2 learn the program (the architecture and the tensor shapes) and {printed}; the weights "
                f"and the input stay secret ({self.truncation} truncation and {self.convolution} convolutions reveal nothing more).")


@dataclass(frozen=True)
class FixedSpec:
    frac_bits: int = 12  # F: scale 2^F
    total_bits: int = 41  # K: |v| < 2^(K-1)
    kappa: int = 40  # statistical security parameter of TruncPr / LTZ
    prime_bits: int = 128  # FANNG-MPC's 128-bit prime
    reading_precision: int = 12  # R: the runtime's fixed_point_reading_precision
    protocol: Protocol = Protocol()

    def validate(self) -> None:
        self.protocol.validate()
        if not 1 <= self.frac_bits <= 30:
            raise UserError(f"--frac-bits must be between 1 and 30, got {self.frac_bits}")
        if not self.frac_bits + 2 <= self.total_bits <= 64:
            raise UserError(
                f"--total-bits must be between frac-bits + 2 = {self.frac_bits + 2} and 64, got {self.total_bits}"
            )
        if 2 * self.total_bits + self.kappa + 1 > self.prime_bits:
            raise UserError(
                f"--total-bits {self.total_bits} breaks the field: 2K + kappa + 1 = "
                f"{2 * self.total_bits + self.kappa + 1} bits > the {self.prime_bits}-bit prime"
            )
        if not 0 <= self.reading_precision <= 30:
            raise UserError(f"--reading-precision must be between 0 and 30, got {self.reading_precision}")

    @property
    def value_limit_bits(self) -> int:
        """Stored / compared values need |v| < 2^(K-1)."""
        return self.total_bits - 1


def encode(x: np.ndarray, frac_bits: int) -> np.ndarray:
    """round(x * 2^F), half away from zero, as int64 (x float64; |x| * 2^F must stay below 2^62)."""
    scaled = np.asarray(x, dtype=np.float64) * float(2**frac_bits)
    if scaled.size and np.max(np.abs(scaled)) >= 2.0**INT64_SAFE_BITS:
        raise UserError(f"value {np.max(np.abs(x)):g} is too large for frac-bits {frac_bits}")
    return (np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)).astype(np.int64)


def decode(v: np.ndarray, frac_bits: int) -> np.ndarray:
    """v / 2^F as float64."""
    return np.asarray(v, dtype=np.float64) / float(2**frac_bits)


def floor_shift(v: np.ndarray, shift: int) -> np.ndarray:
    """floor(v / 2^shift): the deterministic truncation (int64 or object arrays of Python ints)."""
    return v >> shift


def truncate(v: np.ndarray, shift: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The one truncation of the schedule: floor(v / 2^shift), on int64, Python-int (object) or
    integer-valued float64 arrays (exact for |v| < 2^53). With ``rng`` it simulates Scale-Mamba's
    TruncPr instead: the floor plus 1 with probability equal to the dropped fraction (int64 and
    float64 only; object arrays keep the floor)."""
    if v.dtype == np.float64:
        low_part = v - np.floor(v * 2.0**-shift) * 2.0**shift
        result = np.floor(v * 2.0**-shift)
        if rng is not None:
            result += rng.random(v.shape) * 2.0**shift < low_part
        return result
    result = v >> shift
    if rng is not None and v.dtype == np.int64:
        result += (rng.integers(0, 2**shift, size=v.shape, dtype=np.int64) < (v & (2**shift - 1))).astype(np.int64)
    return result


def bits_of(value: int) -> float:
    """log2 of a non-negative magnitude (0 for 0), for headroom reports."""
    value = int(value)
    return math.log2(value) if value > 0 else 0.0


def max_abs(v: np.ndarray) -> int:
    if v.size == 0:
        return 0
    if v.dtype == object:
        return int(max(abs(int(a)) for a in v.ravel()))
    return max(int(v.max()), -int(v.min()))


def fits_int64(bound: int) -> bool:
    return bound < 2**INT64_SAFE_BITS


def to_exact(v: np.ndarray, bound: int) -> np.ndarray:
    """int64 when every value provably fits, else an object array of Python ints (exact, slow)."""
    return v.astype(np.int64) if fits_int64(bound) else v.astype(object)
