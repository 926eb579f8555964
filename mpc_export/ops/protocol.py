"""The secure-computation steps an op's program performs: each executable op declares them once, in its
``schedule``, and everything else follows from that declaration:

  - the reference kernel takes each truncation's shift (and whether it is exact) from it;
  - the stage limits (the bit budget) are the protocols' input ranges;
  - the cost (triples, random bits, rounds) is priced from it;
  - the template prints its numbers (bit lengths, shifts, the truncation protocol) from it;
  - a test executes the rendered program and checks the protocol calls it makes against it;
  - the bounds: the schedule's ``flow`` declares how each stage is formed from the op's input (its gains,
    and the scale alignment of each offset: a bias at 2^F added to an accumulator at 2^2F is shifted by
    F), and one routine (``Schedule.worst_case``, ``Schedule.error_ulp``) propagates an input bound or
    deviation through it and through the declared truncations' shifts to every stage's worst case and
    the output's error in ulp. The op supplies only its own magnitudes (``Op.bound_terms``: sum |w| per
    output channel, |bias|, ...).

Units: ``calls`` is how many times the program invokes the step per execution, one after the other (run-time
loop iterations); ``elements`` is the vector length of each call. Prices are those of FANNG-MPC's MAMBA
compiler (``Compiler/AdvInteger.py``), checked against the compiler itself by tests/test_cost.py.

Rounds are the openings the program makes, each a network round trip: FANNG's compile.sh (and ``run``)
compile with ``-n``, which does not merge independent openings, so every secret-product instruction and
every opening inside a protocol is its own exchange. This is what the runtime counts ("Sent N elements in
R rounds": one per open instruction and per private-input instruction); the seed model's prediction equals
its count exactly (2,110,404 before the runtime check).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class Stage:
    """An intermediate an executable op holds: its name and bit limit (values must satisfy |v| < 2^limit_bits)."""

    name: str
    limit_bits: int


@dataclass(frozen=True)
class Products:
    """Secret x secret multiplications (one triple each), all of one call in one round."""

    what: str
    calls: int
    elements: int  # all instructions of one call together
    instructions: int = 1  # separate product instructions per call (e.g. one per kernel tap): one opening each

    @property
    def rounds_per_call(self) -> int:
        return self.instructions

    def price(self, kappa: int) -> tuple[int, int]:
        """(triples, random bits) per element."""
        return 1, 0


@dataclass(frozen=True)
class Truncation:
    """floor(v / 2^shift) of the program's values v, |v| < 2^(bit_length - 1). Exact: ``AdvInteger.Trunc``
    (a comparison on the shift dropped bits recovers v mod 2^shift: the floor, always). Probabilistic:
    ``AdvInteger.TruncPr``, the floor or the floor + 1, the latter with probability (v mod 2^shift) / 2^shift.

    ``scale_bits``: the program holds the stage's reference value times 2^scale_bits (a Winograd
    convolution computes 4x the direct one), so the reference truncates by shift - scale_bits: the same
    floor, and the same rounding law."""

    stage: str
    bit_length: int
    shift: int
    exact: bool
    calls: int
    elements: int
    scale_bits: int = 0

    @property
    def limit_bits(self) -> int:
        """Limit on the stage's reference values."""
        return self.bit_length - 1 - self.scale_bits

    @property
    def reference_shift(self) -> int:
        return self.shift - self.scale_bits

    @property
    def rounds_per_call(self) -> int:
        return _trunc_openings(self.shift) if self.exact else 1

    @property
    def rounding_ulp(self) -> int:
        """The most the protocol's result exceeds the floor (units of the result)."""
        return 0 if self.exact else 1

    def price(self, kappa: int) -> tuple[int, int]:
        return (_carry_out_triples(self.shift) if self.exact else 0), self.bit_length + kappa


@dataclass(frozen=True)
class Comparison:
    """LTZ: 1 where v < 0 (``AdvInteger.LTZ`` = an exact truncation by bit_length - 1), needing
    |v| < 2^(bit_length - 1). ``operand`` "difference": v is a - b of two values of the stage (a maximum),
    so the stage's values need |x| < 2^(bit_length - 2)."""

    stage: str
    bit_length: int
    calls: int
    elements: int
    operand: str = "value"
    scale_bits: int = 0  # as for Truncation: the program compares 2^scale_bits x the stage's values

    @property
    def limit_bits(self) -> int:
        return self.bit_length - (2 if self.operand == "difference" else 1) - self.scale_bits

    @property
    def rounds_per_call(self) -> int:
        return _trunc_openings(self.bit_length - 1)

    def price(self, kappa: int) -> tuple[int, int]:
        return _carry_out_triples(self.bit_length - 1), self.bit_length + kappa


Step = Products | Truncation | Comparison


def pairwise_maxima(stage: str, bit_length: int, calls: int, pairs: list[int], scale_bits: int = 0) -> list:
    """The steps of max(a, b) = a + LTZ(a - b) * (b - a) over rounds of pairs (one entry of ``pairs`` per
    round, its vector length): a comparison of the differences on ``bit_length`` bits and a selection
    product, each of ``calls`` run-time iterations. Max pools, global max pools and a conv's fused pool."""
    steps = []
    for count in pairs:
        steps += [Comparison(stage, bit_length, calls, count, operand="difference", scale_bits=scale_bits),
                  Products("max selection", calls, count)]
    return steps


@dataclass(frozen=True)
class Weighted:
    """A stage formed from the running value v, bounded per output channel o by

        |stage[o]| <= gain[o] * max |v| + offset[o] * 2^offset_shift

    (a weighted sum of values of v plus an aligned offset). ``gain`` and ``offset`` are magnitudes: a
    constant (a pool's window area, a rounded reciprocal) or the name of one of the op's ``bound_terms``
    (e.g. "weight": sum |w| over output o's kernel; "bias": |bias[o]|). ``offset_shift`` is the offset's scale alignment: the offset is stored at
    2^F and the stage holds 2^(F + offset_shift) (a bias into an accumulator at 2^2F: F)."""

    stage: str
    gain: str | int = 1
    offset: str | None = None
    offset_shift: int = 0


@dataclass(frozen=True)
class Floor:
    """The running value becomes the result of the truncation declared on ``stage`` (its reference shift,
    and its rounding: exact, or the floor + 1 at most)."""

    stage: str


@dataclass(frozen=True)
class Hold:
    """The running value, unchanged in magnitude (a copy, a ReLU, a maximum), is held as ``stage``."""

    stage: str


@dataclass(frozen=True)
class SumOfInputs:
    """The running value starts as the sum of the op's inputs (a residual add), held as ``stage``."""

    stage: str


FlowStep = Weighted | Floor | Hold | SumOfInputs


@dataclass
class Schedule:
    """An op's declared protocol steps (in program order), its intermediates (stages) with their limits,
    and its value flow (how each stage is formed, for the bounds). The running value of the flow starts as
    the op's input (one input; several need a leading ``SumOfInputs``) and ends as its output."""

    steps: list = field(default_factory=list)
    stored: list[Stage] = field(default_factory=list)  # values held without a protocol on them: |v| < 2^limit
    flow: list = field(default_factory=list)  # FlowStep, in program order

    def truncation(self, stage: str) -> Truncation:
        return self._one(Truncation, stage)

    def comparison(self, stage: str) -> Comparison:
        return self._one(Comparison, stage)

    def _one(self, kind, stage: str):
        found = [s for s in self.steps if isinstance(s, kind) and s.stage == stage]
        if len(found) != 1:
            raise KeyError(f"no single {kind.__name__} declared on stage {stage!r}")
        return found[0]

    def narrowed(self, limits: dict[str, int]) -> "Schedule":
        """The same steps with each comparison on a listed stage narrowed so that the stage's values need
        only |v| < 2^limits[stage] (calibrated limits; never wider than declared)."""
        steps = [replace(step, bit_length=min(step.bit_length, step.bit_length - step.limit_bits + limits[step.stage]))
                 if isinstance(step, Comparison) and step.stage in limits else step for step in self.steps]
        return Schedule(steps, self.stored, self.flow)

    def alignment(self, stage: str) -> int:
        """The offset_shift of the ``Weighted`` declared on ``stage``: the scale alignment the reference
        and the bounds apply to its offset."""
        found = [step for step in self.flow if isinstance(step, Weighted) and step.stage == stage]
        if len(found) != 1:
            raise KeyError(f"no single Weighted declared on stage {stage!r}")
        return found[0].offset_shift

    def worst_case(self, terms: dict, in_bounds) -> tuple[dict[str, int], int]:
        """Sound bounds on |v|: (each stage's, the output's), given bounds on the inputs' |v| (integers at
        scale 2^F) and the op's ``bound_terms``. A floor by 2^s of |v| <= B lies in [-ceil(B / 2^s),
        floor(B / 2^s) + rounding]."""

        def weighted(value, step):
            offset = 0 if step.offset is None else _term(terms, step.offset) * 2**step.offset_shift
            return _term(terms, step.gain) * value + offset

        def floor(value, truncation):
            shift = truncation.reference_shift
            return _larger(-(-value // 2**shift), value // 2**shift + truncation.rounding_ulp)

        return self._propagate(in_bounds, weighted, floor)

    def error_ulp(self, terms: dict, in_errors) -> int:
        """Bound on |MPC - reference| at the output (units of 2^-F), given those of the inputs: a deviation
        d grows to gain * d (offsets are exact), a floor by 2^s turns it into at most ceil(d / 2^s), and a
        probabilistic truncation adds its rounding (1); a maximum or a ReLU does not amplify it."""

        def floor(value, truncation):
            return -(-value // 2**truncation.reference_shift) + truncation.rounding_ulp

        _, error = self._propagate(in_errors, lambda value, step: _term(terms, step.gain) * value, floor)
        return error

    def _propagate(self, inputs, weighted, floor) -> tuple[dict[str, int], int]:
        """Run the flow on per-channel magnitudes (Python ints): ``weighted(value, step)`` and
        ``floor(value, truncation)`` are the rules; returns each stage's maximum and the output's, and
        checks that every declared stage got one."""
        inputs = [int(v) for v in inputs]
        if len(inputs) != 1 and not (self.flow and isinstance(self.flow[0], SumOfInputs)):
            raise ValueError(f"a flow over {len(inputs)} inputs must start with SumOfInputs")
        value = inputs[0] if len(inputs) == 1 else None
        stages: dict[str, int] = {}
        for step in self.flow:
            if isinstance(step, SumOfInputs):
                value = sum(inputs)
            elif isinstance(step, Weighted):
                value = weighted(value, step)
            elif isinstance(step, Floor):
                value = floor(value, self.truncation(step.stage))
            if not isinstance(step, Floor):
                stages[step.stage] = _largest(value)
        missing = [stage.name for stage in self.stages() if stage.name not in stages]
        if missing:
            raise ValueError(f"the flow declares no value for stage(s) {', '.join(missing)}")
        return stages, _largest(value)

    def stages(self) -> list[Stage]:
        """Every intermediate once, in order of first mention, with the tightest limit any use needs."""
        limits: dict[str, int] = {}
        for stage in self.stored:
            limits[stage.name] = min(limits.get(stage.name, stage.limit_bits), stage.limit_bits)
        for step in self.steps:
            if not isinstance(step, Products):
                limits[step.stage] = min(limits.get(step.stage, step.limit_bits), step.limit_bits)
        return [Stage(name, bits) for name, bits in limits.items()]

    def cost(self, kappa: int) -> dict:
        """Counts by protocol shape, and the preprocessing (triples, random bits) and rounds they need."""
        multiplications = triples = bits = rounds = 0
        truncations: dict[tuple[int, int, bool], int] = {}
        comparisons: dict[int, int] = {}
        for step in self.steps:
            n = step.calls * step.elements
            if n == 0:
                continue
            t, b = step.price(kappa)
            triples += t * n
            bits += b * n
            rounds += step.calls * step.rounds_per_call
            if isinstance(step, Products):
                multiplications += n
            elif isinstance(step, Truncation):
                key = (step.bit_length, step.shift, step.exact)
                truncations[key] = truncations.get(key, 0) + n
            else:
                comparisons[step.bit_length] = comparisons.get(step.bit_length, 0) + n
        return {
            "multiplications": multiplications,
            "truncations": sum(truncations.values()),
            "comparisons": sum(comparisons.values()),
            "truncations_by_shape": {f"{k},{m},{'exact' if e else 'probabilistic'}": n
                                     for (k, m, e), n in sorted(truncations.items())},
            "comparisons_by_bits": {str(k): n for k, n in sorted(comparisons.items())},
            "triples": triples,
            "bits": bits,
            "rounds": rounds,
        }


def _term(terms: dict, term: str | int):
    """A gain or offset of a ``Weighted``: a constant, or the op's bound term of that name (an object
    array of Python ints, one per output channel)."""
    return term if isinstance(term, int) else terms[term]


def _larger(a, b):
    """Elementwise maximum of two magnitudes (Python ints, or object arrays of them: never int64)."""
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    return np.maximum(np.asarray(a, dtype=object), np.asarray(b, dtype=object))


def _largest(value) -> int:
    """The largest of a magnitude's channels, a Python int."""
    return value if isinstance(value, int) else max(int(v) for v in np.ravel(value))


def _carry_out_triples(m: int) -> int:
    """Secret products of ``AdvInteger.Mod2m``'s BitLT on m bits: CarryOutAux's tree, which pairs the
    (p, g) carries level by level (an odd one out passes through) and computes 2 products per pair, 1 for
    the last pair of a level (Mod2 for m = 1: none)."""
    count, items = 0, m
    while items > 1:
        count += 2 * (items // 2) - 1
        items = (items + 1) // 2
    return count


def _trunc_openings(m: int) -> int:
    """Openings of an exact truncation by m bits (LTZ(k): m = k - 1): the masked value, then one per product
    instruction of the carry tree (the compiler does not merge them under -n)."""
    return 1 + _carry_out_triples(m)
