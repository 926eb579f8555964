"""The runtime's file-parsing rules, re-implemented independently of mpc_export (test oracle).

FANNG-MPC Input_Output_FS: tokens must match ^(-?[0-9]+)(\\.[0-9]+)?$; a token with a point is
stod(token) then gfp::assign(double) = C round(value * 2^R) (half away from zero); a token without a
point is stoi (32-bit signed), unscaled.
"""

import math
import re

PATTERN = re.compile(r"^(-?[0-9]+)(\.[0-9]+)?$")


def runtime_parse(text: str, reading_precision: int = 12) -> list[int]:
    values = []
    for token in text.split():
        m = PATTERN.match(token)
        assert m, f"runtime would reject token {token!r}"
        if m.group(2):
            x = float(token) * (2.0**reading_precision)
            values.append(int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5)))
        else:
            v = int(token)
            assert -(2**31) <= v < 2**31, f"stoi would overflow on {token!r}"
            values.append(v)
    return values
