"""SCALE-MAMBA / FANNG-MPC (backend ``fanng``): a MAMBA program rendered from ``templates/`` (one snippet
per op, numbers from the op's ``template_args``), its runtime check (``runtime_check.py``), player 0's
files bound to the reserved channels and the IO answers that open them in order, the cost as FANNG's
MAMBA compiler and runtime count it (``cost.py``), and the runner (``runtime.py``)."""

from __future__ import annotations

from ...export.plan import InputFile, ParamFile, PatternFile, program_name
from ...export.products import Product
from ..base import Backend
from .cost import cost_of_options, total_cost
from .render import channel_open_order, render_program


def program_products(graph, fx, params: list[ParamFile], inputs: list[InputFile], debug: bool,
                     pattern: PatternFile | None = None) -> list[Product]:
    """The MAMBA program and the IO answers (one "i <path>" per channel open, in the program's order)."""
    name = program_name(graph)
    order = channel_open_order(params, inputs, pattern)
    script = (
        "#!/bin/sh\n# Answers for FANNG-MPC's IO filesystem, one 'i <path>' per channel open, in program order.\n"
        "# Usage (each player): ./io_answers.sh | ./Player.x <player> Programs/" + name + "\n"
        + "".join(f"echo 'i {path}'  # channel {channel}\n" for channel, path in order)
    )
    return [
        Product(f"program/{name}/{name}.mpc", render_program(graph, fx, params, inputs, debug=debug, pattern=pattern), {"role": "program"}),
        Product("io_answers.txt", "".join(f"i {path}\n" for _, path in order), {"role": "io_answers"}),
        Product("io_answers.sh", script, {"role": "io_answers_script"}, executable=True),
    ]


class MambaBackend(Backend):
    name = "fanng"
    runtime_name = "FANNG-MPC"

    def check_graph(self, graph, fx):
        """The field rule, per declared step: a truncation or comparison on b bits masks its input with
        kappa more random bits, so b + kappa + 1 bits must fit FANNG-MPC's prime (fx.prime_bits). Checked on
        each step's own bit length, so every option (Winograd's 2 extra bits, calibrated widths) is covered."""
        from ...errors import UserError
        from ...ops import Comparison, Truncation

        for node in graph.nodes:
            if not node.spec.executable:
                continue
            for step in node.spec.schedule(node, fx).steps:
                if not isinstance(step, (Truncation, Comparison)):
                    continue
                need = step.bit_length + fx.kappa + 1
                if need <= fx.prime_bits:
                    continue
                kind = "truncation" if isinstance(step, Truncation) else "comparison"
                direct = step.scale_bits and step.bit_length - step.scale_bits + fx.kappa + 1 <= fx.prime_bits
                fix = ("--convolution direct (its step has no Winograd scale bits)" if direct else
                       f"a smaller --total-bits (at most {(fx.prime_bits - fx.kappa - 1 - step.scale_bits) // 2})")
                raise UserError(f"{node.name}: its {kind} of {step.stage} declares {step.bit_length} bits, which with kappa "
                                f"{fx.kappa} needs {need} > the {fx.prime_bits}-bit prime of FANNG-MPC; use {fix}")

    def program_products(self, graph, fx, params, inputs, x_int, debug, pattern):
        return program_products(graph, fx, params, inputs, debug, pattern)

    def manifest_fields(self, graph, fx, params, inputs, pattern, debug):
        name = program_name(graph)
        return {"program": {"name": name, "path": f"program/{name}/{name}.mpc", "debug": debug},
                "channel_open_order": [{"channel": c, "path": p} for c, p in channel_open_order(params, inputs, pattern)],
                "cost": self.cost(graph, fx, params)}

    def cost(self, graph, fx, params):
        return {**total_cost(graph, fx, params), "options": cost_of_options(graph, fx, params)}
