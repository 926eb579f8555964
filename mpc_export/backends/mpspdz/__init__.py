"""MP-SPDZ (backend ``mp-spdz``): the same verified export as an MP-SPDZ program for its honest-majority
3-party protocols. Convolutions and dense layers are dot products (``conv2ds``: one reshare per output),
truncations the exact floor at the declared bit length, comparisons at the declared widths, so a run
prints the fixed-point reference's logits bit for bit. The domain (ring size, or the bit length the prime
must hold) follows from the largest declared bit length.

Files: ``mp-spdz/<name>.mpc`` (the program, ``program.py``) and ``mp-spdz/Player-Data/Input-P0-0`` (player
0's integers: the parameters, then each execution's input), beside the shared data files."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UserError
from ...export.plan import program_name
from ...export.products import Product
from ...ops import Comparison, Truncation
from ..base import Backend
from .kernels import KERNELS
from .program import direct, input_text, render_program

INPUT_FILE = "Player-Data/Input-P0-0"
FOLDER = "mp-spdz"


@dataclass(frozen=True)
class ProtocolInfo:
    vm: str  # the virtual machine, beside compile.py in the runtime directory
    security: str
    domain: str  # "ring" (Z/2^k) or "prime" (a prime field)


PROTOCOLS = {
    "sy-rep-ring": ProtocolInfo("sy-rep-ring-party.x", "malicious, abort (SPDZ-wise replicated)", "ring"),
    "ring": ProtocolInfo("replicated-ring-party.x", "semi-honest (replicated)", "ring"),
    "sy-rep-field": ProtocolInfo("sy-rep-field-party.x", "malicious, abort (SPDZ-wise replicated)", "prime"),
    "mal-shamir": ProtocolInfo("malicious-shamir-party.x", "malicious, abort (Shamir)", "prime"),
    "rep-field": ProtocolInfo("replicated-field-party.x", "semi-honest (replicated)", "prime"),
    "shamir": ProtocolInfo("shamir-party.x", "semi-honest (Shamir)", "prime"),
}
DEFAULT_PROTOCOL = "sy-rep-ring"
RING_SIZES = (64, 128)  # the ring sizes the runtime's VMs are built for


def largest_bit_length(graph, fx) -> int:
    """The widest truncation or comparison the program declares (bits of its input, sign included)."""
    widths = [step.bit_length for node in graph.nodes if node.spec.executable
              for step in node.spec.schedule(node, direct(fx)).steps if isinstance(step, (Truncation, Comparison))]
    return max(widths, default=fx.total_bits)


def domain(protocol: str, bits: int) -> dict:
    """The computation domain a protocol needs for values of ``bits`` bits: the smallest ring 2^k with k >
    bits, or a prime of at least bits + 40 (statistical security) + 1 bits, which the VM chooses from
    the compiled bit length."""
    if PROTOCOLS[protocol].domain == "ring":
        fitting = [k for k in RING_SIZES if bits < k]
        if not fitting:
            raise UserError(f"the program declares a {bits}-bit step; MP-SPDZ's rings here hold at most {RING_SIZES[-1] - 1} bits "
                            "(lower --total-bits)")
        return {"kind": "ring", "ring_bits": fitting[0], "compile_flags": ["-R", str(fitting[0])]}
    return {"kind": "prime", "bit_length": bits, "statistical_security": 40, "prime_bits_at_least": bits + 41,
            "compile_flags": ["-F", str(bits)]}


def compile_flags(protocol: str, bits: int) -> list[str]:
    """compile.py's arguments before the program: the protocol, its domain, memory order preserved (the
    kernels gather through run-time addresses)."""
    return ["-E", protocol, *domain(protocol, bits)["compile_flags"], "-M"]


class MpSpdzBackend(Backend):
    name = "mp-spdz"
    runtime_name = "MP-SPDZ"
    default_convolution = "direct"

    def __init__(self, protocol: str = DEFAULT_PROTOCOL):
        self.protocol = protocol

    def with_protocol(self, protocol: str | None) -> "MpSpdzBackend":
        if protocol is None:
            return self
        if protocol not in PROTOCOLS:
            raise UserError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        return MpSpdzBackend(protocol)

    def for_manifest(self, manifest):
        protocol = manifest.backend_record.get("protocol")
        if protocol not in PROTOCOLS:
            from ...errors import VerificationFailed

            raise VerificationFailed(f"manifest.json: mp_spdz.protocol {str(protocol)[:40]!r} is not one of {', '.join(PROTOCOLS)}")
        return MpSpdzBackend(protocol)

    def check_options(self, fx, debug):
        p = fx.protocol
        refusals = [(not p.exact, "--truncation probabilistic (this backend truncates exactly)"),
                    (p.convolution == "winograd", "--convolution winograd (MP-SPDZ computes dot products; use direct)"),
                    (p.public_weights, "--weights public"), (p.public_sparsity, "--sparsity public"), (debug, "--debug")]
        for refused, what in refusals:
            if refused:
                raise UserError(f"--backend mp-spdz does not support {what}")

    def check_graph(self, graph, fx=None):
        for node in graph.nodes:
            if node.op not in KERNELS:
                raise UserError(f"{node.name}: op {node.op} has no MP-SPDZ kernel")

    def program_products(self, graph, fx, params, inputs, x_int, debug, pattern):
        self.check_graph(graph)
        name = program_name(graph)
        bits = largest_bit_length(graph, fx)
        line = f"compile.py {' '.join(compile_flags(self.protocol, bits))} {name}.mpc"
        return [Product(f"{FOLDER}/{name}.mpc", render_program(graph, fx, len(inputs), line), {"role": "program"}),
                Product(f"{FOLDER}/{INPUT_FILE}", input_text(graph, fx, x_int), {"role": "mp_spdz_input", "player": 0})]

    def manifest_fields(self, graph, fx, params, inputs, pattern, debug):
        name = program_name(graph)
        bits = largest_bit_length(graph, fx)
        info = PROTOCOLS[self.protocol]
        return {"program": {"name": name, "path": f"{FOLDER}/{name}.mpc", "debug": debug},
                "channel_open_order": [],
                "cost": self.cost(graph, fx, params),
                "mp_spdz": {"protocol": self.protocol, "vm": info.vm, "security": info.security,
                            "largest_bit_length": bits, "domain": domain(self.protocol, bits),
                            "compile_flags": compile_flags(self.protocol, bits), "input_file": f"{FOLDER}/{INPUT_FILE}"}}

    def cost(self, graph, fx, params):
        from .cost import cost_report

        return cost_report(graph, fx)
