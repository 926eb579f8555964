"""The program's check of its runtime, run before any channel opens (so before any secret enters).

FANNG-MPC's ``src/config.h`` ships with test switches on: ``return_triple_zero 1`` makes every Beaver
triple (0, 0, 0), and since the MAMBA compiler turns each secret product x y into a triple plus the
openings of x - a and y - b, every product then opens both operands to every player. Nothing outside the
runtime can tell, so every generated program begins by drawing a few units of each kind of preprocessing
it consumes (Beaver triples and random bits: ``tests/test_runtime_check.py`` reads the compiled
instructions and checks that these are the only kinds), opening them in one round, and checking them:

  - each triple: a != 0, b != 0 and c = a b (mod p); a secure runtime's a or b is 0 with probability 2/p;
  - the random bits: each is 0 or 1, and the RANDOM_BITS of them are not all equal (a secure runtime
    fails this with probability 2^(1 - RANDOM_BITS) = 2^-127).

On failure player 0 prints one line (``FAILED_TRIPLES`` or ``FAILED_BITS``: the cause and the fix) and
the program stops (``crash()``) before it opens the input channel: nothing is input. The units opened
here are never used again (each TRIPLE or BIT instruction draws fresh ones). What it cannot see: a
runtime that serves random-looking but predictable preprocessing (a fixed seed, a key known to another
party), one that leaks shares on the network, or one that was built from other sources; only the
runtime's build can rule those out.

Declared once here: the template prints these numbers, the cost report prices them (``cost``), and
``run`` reads the outcome from player 0's log (``outcome``).
"""

from __future__ import annotations

TRIPLES = 4  # Beaver triples drawn and opened
RANDOM_BITS = 128  # random bits drawn and opened

PASSED = "RUNTIME CHECK passed"
FAILED = "RUNTIME CHECK FAILED"
_SWITCHES = ("return_triple_zero, return_dabit_zero, return_share_zero, ignore_triple_db_count, "
             "ignore_dabit_db_count, ignore_share_db_count and reuse_circuit_zero")
_FIX = (f"FANNG-MPC's src/config.h ships with test switches on; set {_SWITCHES} to 0 and rebuild the runtime "
        "(make progs). Nothing was input.")
FAILED_TRIPLES = (f"{FAILED}: the runtime's Beaver triples are not random (a = 0, b = 0 or c != a b), so every "
                  f"secret product would open its operands to all players. {_FIX}")
FAILED_BITS = (f"{FAILED}: the runtime's random bits are not random bits (not 0 or 1, or all {RANDOM_BITS} "
               f"equal), so every truncation and comparison would reveal its input. {_FIX}")


def template_args() -> dict:
    """What program.mpc.j2 prints: the counts and the messages (constants of this module: no '%', no quote)."""
    return {"triples": TRIPLES, "random_bits": RANDOM_BITS, "passed": PASSED,
            "failed_triples": FAILED_TRIPLES, "failed_bits": FAILED_BITS}


def cost() -> dict:
    """The check's preprocessing and rounds, in the cost report's units: TRIPLES triples and RANDOM_BITS
    random bits drawn, opened together in one round; no secret multiplication, truncation or comparison."""
    return {"multiplications": 0, "truncations": 0, "comparisons": 0, "triples": TRIPLES, "bits": RANDOM_BITS,
            "rounds": 1, "truncations_by_shape": {}, "comparisons_by_bits": {}}


def outcome(lines) -> str | None:
    """The check's outcome in a run's log (an iterable of lines): "passed", the failure line, or None when
    the log has neither (a program without the check, or a run that stopped before it)."""
    for line in lines:
        if PASSED in line:
            return "passed"
        if FAILED in line:
            return line[line.index(FAILED):].strip()
    return None
