"""A plaintext interpreter of generated MAMBA programs: a test oracle, written from the MAMBA manual
(../shared/docs-mamba) and the compiler's AdvInteger semantics, independent of mpc_export.

It executes a .mpc file as the MAMBA compiler would see it, but on clear Python integers:
  - sint / cint / regint registers are vectors of Python ints; ``Type.Array``, ``load_mem``/``store_in_mem``
    (contiguous at an address, or gathered / scattered through a regint vector of addresses) act on one
    memory per type;
  - ``for_range(n)`` runs its body n times (a run-time loop, one body in the compiled program);
  - channels are opened in program order and answered from the build's io_answers.txt, and each token is
    read under the runtime's rules (tests/runtime_rules.py): a decimal is round(x * 2^R), an integer raw;
  - ``AdvInteger.Trunc`` is the floor, ``TruncPr`` the floor or the floor + 1 (with probability equal to the
    dropped fraction, from a seeded generator), ``LTZ`` is v < 0.
Every protocol call is recorded (protocol, bit length, shift, vector size) and checked against its input
range (|v| < 2^(k-1), as the protocols need); every secret x secret product is counted.
"""

from __future__ import annotations

import random
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np

from runtime_rules import runtime_parse

KIND_ORDER = {"s": 2, "c": 1, "r": 0}


class Value:
    """A register: ``kind`` 's' (secret), 'c' (clear), 'r' (regint); ``values`` a 1-D object array."""

    def __init__(self, kind, values, machine):
        self.kind = kind
        self.values = None if values is None else np.asarray(values, dtype=object).reshape(-1)
        self.machine = machine

    @property
    def size(self):
        return 1 if self.values is None else len(self.values)

    def _binary(self, other, op, name):
        if isinstance(other, Value):
            kind = max(self.kind, other.kind, key=KIND_ORDER.get)
            if name == "mul" and self.kind == "s" and other.kind == "s":
                self.machine.products += max(self.size, other.size)
            return Value(kind, op(self.values, other.values), self.machine)
        if isinstance(other, (int, np.integer)):
            return Value(self.kind, op(self.values, int(other)), self.machine)
        return NotImplemented

    def __add__(self, other):
        return self._binary(other, lambda a, b: a + b, "add")

    def __radd__(self, other):
        return self._binary(other, lambda a, b: b + a, "add")

    def __sub__(self, other):
        return self._binary(other, lambda a, b: a - b, "sub")

    def __rsub__(self, other):
        return self._binary(other, lambda a, b: b - a, "sub")

    def __mul__(self, other):
        return self._binary(other, lambda a, b: a * b, "mul")

    def __rmul__(self, other):
        return self._binary(other, lambda a, b: b * a, "mul")

    def __rshift__(self, shift):
        assert self.kind == "c" and isinstance(shift, int)
        return Value("c", np.array([_field(v) >> shift for v in self.values], dtype=object), self.machine)

    def __eq__(self, other):
        """regint 1 where equal (the runtime compares regints; a cint converts to one first)."""
        mine = self if self.kind == "r" else Value("r", [_regint_of(v) for v in self.values], self.machine)
        other_values = other.values if isinstance(other, Value) else int(other)
        return Value("r", np.array([int(v) for v in (mine.values == other_values)], dtype=object).reshape(-1), self.machine)

    def __ne__(self, other):
        return 1 - (self == other)

    __hash__ = object.__hash__

    def __int__(self):
        assert self.size == 1, "a vector used as a scalar"
        return int(self.values[0])

    __index__ = __int__

    def __str__(self):
        return str(int(self))

    def reveal(self):
        return Value("c", self.values.copy(), self.machine)

    def store_in_mem(self, address):
        self.machine.store(self.kind, address, self.values)


PRIME = 2**128 + 51  # the runtime's field (Data/SharingData.txt): a cint is a residue


def _field(value) -> int:
    """The cint's residue in [0, p)."""
    return int(value) % PRIME


def _regint_of(value) -> int:
    """regint(cint): the runtime's CONVMODP, the signed representative's absolute value reduced to its low
    64 bits, with the sign put back (src/Local/Float.cpp, to_signed_bigint)."""
    residue = _field(value)
    negative = residue > (PRIME - 1) // 2
    magnitude = (PRIME - residue if negative else residue) & (2**64 - 1)
    return -magnitude if negative else magnitude


class Crashed(Exception):
    """The program called crash(): the runtime stops every player."""


class Array:
    """``Type.Array(n)`` (allocated) or ``Array(n, Type, address)`` (a view at an address)."""

    def __init__(self, length, kind_type, address=None):
        self.length = int(length)
        self.type = kind_type
        self.address = kind_type.machine.allocate(kind_type.kind, self.length) if address is None else int(address)

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return self.type.load_mem(self.address + int(index))

    def __setitem__(self, index, value):
        if not isinstance(value, Value):
            value = self.type(value)
        value.store_in_mem(self.address + int(index))


class RegisterType:
    """sint, cint or regint: a constructor plus the class methods programs call."""

    def __init__(self, kind, machine):
        self.kind = kind
        self.machine = machine

    def __call__(self, value=None, size=None):
        if value is None:
            return Value(self.kind, None, self.machine)  # an empty register a protocol writes into
        if isinstance(value, Value):
            if self.kind == "r" and value.kind == "c":
                return Value("r", np.array([_regint_of(v) for v in value.values], dtype=object), self.machine)
            return Value(self.kind, value.values.copy(), self.machine)
        return Value(self.kind, [int(value)] * (size or 1), self.machine)

    def Array(self, length):
        return Array(length, self)

    def load_mem(self, address, size=None):
        return Value(self.kind, self.machine.load(self.kind, address, size), self.machine)

    def get_private_input_from(self, player, channel, size=None):
        assert self.kind == "s" and player == 0
        return Value("s", self.machine.read(channel, size or 1), self.machine)

    def get_random_bit(self, size=None):
        assert self.kind == "s"
        return Value("s", self.machine.random_bits(size or 1), self.machine)

    def public_input(self, channel, size=None):
        """cint.public_input / regint.public_input: every player reads the same values (regint: clear
        integers, as the runtime's ``long`` read of an integer token); here, from the one data folder."""
        assert self.kind in ("c", "r")
        return Value(self.kind, self.machine.read(channel, size or 1), self.machine)


class Machine:
    """Memories, channels and the protocol log of one plaintext execution."""

    def __init__(self, data_root: Path, answers: list[str], reading_precision: int, seed: int = 0,
                 preprocessing: str = "random"):
        """preprocessing: "random" (a secure runtime), "zero_triples" (FANNG's config.h as shipped: every
        Beaver triple 0) or "constant_bits" (every random bit 0)."""
        self.preprocessing = preprocessing
        self.preprocessing_drawn = Counter()  # kind -> units drawn
        self.memory = {"s": np.zeros(0, dtype=object), "c": np.zeros(0, dtype=object), "r": np.zeros(0, dtype=object)}
        self.data_root = data_root
        self.answers = list(answers)
        self.reading_precision = reading_precision
        self.open_channels: dict[int, list[int]] = {}
        self.opened: list[int] = []
        self.printed: list[str] = []
        self.calls: list[tuple] = []  # (protocol, bit length, shift, elements)
        self.range_violations: list[str] = []
        self.products = 0
        self.rng = random.Random(seed)

    # ---- memory
    def allocate(self, kind, n):
        address = len(self.memory[kind])
        self.memory[kind] = np.concatenate([self.memory[kind], np.zeros(n, dtype=object)])
        return address

    def _addresses(self, address, size):
        if isinstance(address, Value) and address.size > 1:
            return np.array([int(a) for a in address.values], dtype=np.int64)
        start = int(address)
        return np.arange(start, start + (size or 1))

    def load(self, kind, address, size):
        where = self._addresses(address, size)
        assert where.min() >= 0 and where.max() < len(self.memory[kind]), f"{kind} load outside memory"
        return self.memory[kind][where].copy()

    def store(self, kind, address, values):
        where = self._addresses(address, len(values))
        assert len(where) == len(values) and where.min() >= 0 and where.max() < len(self.memory[kind]), \
            f"{kind} store outside memory"
        self.memory[kind][where] = values

    # ---- channels
    def open_channel(self, channel):
        mode, path = self.answers.pop(0).split()
        assert mode == "i"
        self.open_channels[int(channel)] = runtime_parse((self.data_root / path).read_text(), self.reading_precision)
        self.opened.append(int(channel))

    def close_channel(self, channel):
        del self.open_channels[int(channel)]

    def read(self, channel, n):
        stream = self.open_channels[int(channel)]
        assert len(stream) >= n, f"channel {channel}: {n} values wanted, {len(stream)} left"
        values, self.open_channels[int(channel)] = stream[:n], stream[n:]
        return values

    # ---- preprocessing
    def triple(self, a, b, c):
        self.preprocessing_drawn["triple"] += 1
        if self.preprocessing == "zero_triples":
            x = y = 0
        else:
            x, y = self.rng.randrange(PRIME), self.rng.randrange(PRIME)
        a.values, b.values, c.values = (np.array([v], dtype=object) for v in (x, y, x * y % PRIME))
        a.kind = b.kind = c.kind = "s"

    def random_bits(self, n):
        self.preprocessing_drawn["bit"] += n
        return [0 if self.preprocessing == "constant_bits" else self.rng.randrange(2) for _ in range(n)]

    def crash(self):
        raise Crashed("crash() called; printed before it: " + (self.printed[-1] if self.printed else "nothing"))

    # ---- protocols (AdvInteger)
    def _check(self, protocol, value, bit_length):
        peak = max(abs(int(v)) for v in value.values)
        if peak >= 2 ** (bit_length - 1):
            self.range_violations.append(f"{protocol}({bit_length}): |v| = 2^{np.log2(peak):.1f}")

    def ltz(self, result, value, bit_length, kappa):
        self._check("LTZ", value, bit_length)
        self.calls.append(("LTZ", bit_length, None, value.size))
        result.values = np.array([1 if int(v) < 0 else 0 for v in value.values], dtype=object)
        result.kind = "s"

    def trunc(self, result, value, bit_length, shift, kappa, signed):
        self._check("Trunc", value, bit_length)
        self.calls.append(("Trunc", bit_length, shift, value.size))
        result.values = np.array([int(v) >> shift for v in value.values], dtype=object)
        result.kind = "s"

    def trunc_pr(self, value, bit_length, shift, kappa):
        self._check("TruncPr", value, bit_length)
        self.calls.append(("TruncPr", bit_length, shift, value.size))
        out = [(int(v) >> shift) + (1 if self.rng.randrange(2**shift) < (int(v) & (2**shift - 1)) else 0) for v in value.values]
        return Value("s", out, self)

    def call_counts(self) -> Counter:
        """Elements per (protocol, bit length, shift)."""
        counts = Counter()
        for protocol, k, m, n in self.calls:
            counts[(protocol, k, m)] += n
        return counts


def _for_range(n):
    def decorate(body):
        for i in range(int(n)):
            body(Value("r", [i], _for_range.machine))
        return body
    return decorate


def _if(machine):
    def condition(value):
        def decorate(body):
            if int(value) != 0:
                body()
            return body
        return decorate
    return condition


def run_program(program: Path, data_root: Path, answers_file: Path, reading_precision: int = 12, seed: int = 0,
                preprocessing: str = "random") -> Machine:
    """Execute a generated .mpc on clear integers; returns the machine (printed lines, protocol log).
    preprocessing: see Machine; a program that calls crash() raises Crashed."""
    machine = Machine(data_root, answers_file.read_text().splitlines(), reading_precision, seed, preprocessing)
    sint, cint, regint = (RegisterType(k, machine) for k in ("s", "c", "r"))
    _for_range.machine = machine
    precision = types.SimpleNamespace(set_precision=lambda f, k: None)
    adv = types.ModuleType("Compiler.AdvInteger")
    adv.LTZ, adv.Trunc, adv.TruncPr, adv.inverse_of_two = machine.ltz, machine.trunc, machine.trunc_pr, {}
    base = types.ModuleType("Compiler.instructions_base")
    base.set_global_vector_size = base.reset_global_vector_size = lambda *a: None
    compiler = types.ModuleType("Compiler")
    compiler.AdvInteger, compiler.instructions_base = adv, base
    names = {
        "sint": sint, "cint": cint, "regint": regint, "Array": lambda n, t, a: Array(n, t, a),
        "sfix": precision, "cfix": precision, "for_range": _for_range,
        "print_ln": lambda fmt, *args: machine.printed.append(fmt % tuple(str(a) for a in args)),
        "open_channel_with_return": machine.open_channel, "close_channel": machine.close_channel,
        "triple": machine.triple, "crash": machine.crash, "if_": _if(machine),
        "__name__": "__main__",
    }
    saved = {k: sys.modules.get(k) for k in ("Compiler", "Compiler.AdvInteger", "Compiler.instructions_base")}
    sys.modules.update({"Compiler": compiler, "Compiler.AdvInteger": adv, "Compiler.instructions_base": base})
    try:
        exec(compile(program.read_text(), str(program), "exec"), names)
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module
    assert not machine.answers, f"{len(machine.answers)} IO answers never used"
    return machine
