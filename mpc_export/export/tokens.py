"""The runtime's number format, both ways.

FANNG-MPC's IO filesystem accepts tokens matching ``^(-?[0-9]+)(\\.[0-9]+)?$``. A token with a point is
parsed with ``stod`` and becomes round(value * 2^R) (C ``round``: half away from zero), R being the
runtime's compiled-in ``fixed_point_reading_precision``; a token without a point is ``stoi``: a raw
integer, unscaled, |v| < 2^31.

``decimal`` writes the exact decimal of v / 2^F (F fractional digits suffice since 2^-F = 5^F / 10^F),
trimmed of trailing zeros but keeping one digit after the point; that decimal is a double exactly
(|v| < 2^53), so the runtime reads back v when F == R. ``integer`` writes v itself.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import UserError

TOKEN = re.compile(r"^(-?[0-9]+)(\.[0-9]+)?$")
STOI_LIMIT = 2**31
FORMATS = ("decimal", "integer")


def decimal_token(v: int, frac_bits: int) -> str:
    v = int(v)
    sign = "-" if v < 0 else ""
    mag = abs(v)
    whole, rest = divmod(mag, 2**frac_bits)
    digits = str(rest * 5**frac_bits).rjust(frac_bits, "0").rstrip("0") or "0"
    return f"{sign}{whole}.{digits}"


def check_format(number_format: str, frac_bits: int, reading_precision: int) -> None:
    if number_format not in FORMATS:
        raise UserError(f"--number-format must be decimal or integer, got {number_format!r}")
    if number_format == "decimal" and frac_bits != reading_precision:
        raise UserError(
            f"--number-format decimal with --frac-bits {frac_bits} != --reading-precision {reading_precision}: "
            f"the runtime would scale every value by 2^{reading_precision}; use --number-format integer"
        )


def format_values(values: np.ndarray, number_format: str, frac_bits: int, what: str) -> str:
    """One line, space-separated, C order."""
    return join_tokens(*distinct_tokens(values, number_format, frac_bits, what)[1:])


def distinct_tokens(values: np.ndarray, number_format: str, frac_bits: int, what: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(the distinct values, their tokens, each value's index among them in C order): each distinct value
    is formatted once (quantized tensors repeat a few thousand values over millions of entries)."""
    flat = np.asarray(values).ravel()
    if number_format == "integer" and flat.size and (int(flat.max()) >= STOI_LIMIT or int(flat.min()) < -STOI_LIMIT):
        peak = max(abs(int(flat.max())), abs(int(flat.min())))
        raise UserError(f"{what}: a value needs {math.log2(peak) + 1:.1f} bits, more than the runtime's 32-bit "
                        f"integer tokens; use --number-format decimal")
    distinct, positions = np.unique(flat, return_inverse=True)
    token = (lambda v: str(int(v))) if number_format == "integer" else (lambda v: decimal_token(v, frac_bits))
    return distinct, [token(v) for v in distinct], positions.ravel()


def join_tokens(tokens: list[str], positions: np.ndarray) -> str:
    """The file's one line: tokens[positions[0]] tokens[positions[1]] ..., space-separated."""
    return " ".join(np.array(tokens, dtype=object)[positions].tolist()) + "\n"


def parse_token(token: str, reading_precision: int) -> int:
    """What the runtime stores for one token (raises ValueError where the runtime would abort)."""
    match = TOKEN.match(token)
    if not match:
        raise ValueError(f"invalid token {token!r}")
    if match.group(2) is None:
        value = int(token)
        if not -STOI_LIMIT <= value < STOI_LIMIT:
            raise ValueError(f"integer token {token!r} out of range for stoi")
        return value
    scaled = float(token) * 2.0**reading_precision
    return int(math.copysign(math.floor(abs(scaled) + 0.5), scaled))


def parse_text(text: str, reading_precision: int) -> list[int]:
    return [parse_token(t, reading_precision) for t in text.split()]
