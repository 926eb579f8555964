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

    def program_products(self, graph, fx, params, inputs, x_int, debug, pattern):
        return program_products(graph, fx, params, inputs, debug, pattern)

    def manifest_fields(self, graph, fx, params, inputs, pattern, debug):
        name = program_name(graph)
        return {"program": {"name": name, "path": f"program/{name}/{name}.mpc", "debug": debug},
                "channel_open_order": [{"channel": c, "path": p} for c, p in channel_open_order(params, inputs, pattern)],
                "cost": self.cost(graph, fx, params)}

    def cost(self, graph, fx, params):
        return {**total_cost(graph, fx, params), "options": cost_of_options(graph, fx, params)}
