"""Render the MAMBA program from ``templates/program.mpc.j2`` and each op's snippet
(``templates/<template>.mpc.j2``, the op naming its template and giving its numbers in ``template_args``).

The op table is built from the registry (``OPS``): each executable op names its template file, which
defines three macros: ``prelude()`` (helper functions, emitted once if the graph uses the op),
``setup(args)`` (tables built once) and ``call(args)`` (one layer). All integers a macro needs come from
the op's ``template_args``; the templates only lay them out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jinja2

from ... import __version__
from . import runtime_check
from ...export.plan import InputFile, ParamFile, PatternFile, files_of
from ...ir import Graph
from ...fixedpoint import FixedSpec

READ_CHUNK = 4096  # values read per private_input instruction (bounded vector registers)
MAX_VECTOR = 4096
PATTERN_BUFFER = "SPARSITY_PATTERN"  # the regint array the public pattern is read into


@dataclass
class Buffer:
    name: str
    kind: str  # sint / cint / regint
    size: int
    layout: str  # padded / dense / param
    doc: str
    zero: bool = False
    view_of: str | None = None  # a sub-array of another buffer (a tensor inside a packed channel)
    offset: int = 0


class Layout:
    """Memory of the program: one array per parameter tensor and per activation."""

    def __init__(self, graph: Graph, params: list[ParamFile], param_kind: str = "sint", pattern: PatternFile | None = None):
        """param_kind: how parameters are held, "sint" (secret) or "cint" (public weights); pattern: the
        public integers read at run time (held as regint)."""
        self.graph = graph
        self._pattern = pattern
        self.buffers: list[Buffer] = []
        self._param: dict[tuple[str, str], Buffer] = {}
        self._out: dict[str, Buffer] = {}
        self.file_buffers: list[tuple[Buffer, int, str]] = []  # (buffer, channel, path) in open order
        for path, channel, tensors in files_of(params):
            if len(tensors) == 1:
                pf = tensors[0]
                buf = Buffer(pf.tensor.upper(), param_kind, pf.count, "param", f"{pf.tensor} ({pf.layout}), channel {channel}")
                self._param[(pf.node, pf.param)] = buf
                self.buffers.append(buf)
            else:
                total = sum(pf.count for pf in tensors)
                buf = Buffer(f"PACKED_{tensors[0].param.upper()}", param_kind, total, "param",
                             f"all {tensors[0].param} tensors concatenated, channel {channel}")
                self.buffers.append(buf)
                for pf in tensors:
                    view = Buffer(pf.tensor.upper(), param_kind, pf.count, "param", f"{pf.tensor} ({pf.layout})", view_of=buf.name, offset=pf.offset)
                    self._param[(pf.node, pf.param)] = view
                    self.buffers.append(view)
            self.file_buffers.append((buf, channel, path))
        if pattern is not None:
            self.buffers.append(Buffer(PATTERN_BUFFER, "regint", int(pattern.values.size), "pattern",
                                       f"public sparsity pattern, (o, c, t) per non-zero weight, channel {pattern.channel}"))
        for node in graph.nodes:
            layout = self._layout_for(node)
            if layout == "padded":
                c, h, w = node.shape
                size, doc = c * (h + 2) * (w + 2), f"{node.name} output, CHW planes of ({h}+2) x ({w}+2), zero border"
            else:
                size, doc = _prod(node.shape), f"{node.name} output, dense {'CHW' if len(node.shape) == 3 else 'vector'}"
            buf = Buffer(f"{self.ident(node)}_OUT", "sint", size, layout, doc, zero=layout == "padded")
            self._out[node.name] = buf
            self.buffers.append(buf)
            if node.op == "input":
                self.buffers.append(Buffer("INPUT_STAGING", "sint", _prod(node.shape), "dense", "input as read, dense CHW"))

    @staticmethod
    def _layout_for(node) -> str:
        """Decided by the assign_layouts pass."""
        return node.attrs["out_layout"]

    @staticmethod
    def ident(node) -> str:
        """The program's identifier for a node: its tool-owned name (fold's name_nodes) in upper case."""
        ident = node.name.upper()
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", ident):
            raise ValueError(f"node name {node.name!r} was not assigned by name_nodes")
        return ident

    def param(self, node, name: str) -> str:
        return self._param[(node.name, name)].name

    def pattern(self, node) -> dict:
        """Where the node's public pattern lies: the buffer, the first value's index and the number of
        entries (value triples)."""
        first, values = self._pattern.entries[node.name]
        return {"buffer": PATTERN_BUFFER, "first": first, "count": values // 3}

    def buffer(self, node) -> Buffer:
        return self._out[node.name]

    def buffer_of_input(self, node) -> Buffer:
        return self._out[node.inputs[0]]

    def staging(self, node) -> str:
        return "INPUT_STAGING"


def max_vector(graph: Graph) -> int:
    """Size of the program's index and broadcast scratch arrays: the longest vector any op loads
    (a zero-padded plane, a dense layer's outputs), and at least MAX_VECTOR."""
    longest = MAX_VECTOR
    for node in graph.nodes:
        for shape in [node.shape, *node.in_shapes]:
            longest = max(longest, (shape[1] + 2) * (shape[2] + 2) if len(shape) == 3 else _prod(shape))
    return longest


def _prod(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def comment_text(text: str) -> str:
    """Text from a model (a file name, a description) made safe for one program comment line: printable
    ASCII, with newlines and every other character escaped."""
    return ascii(str(text))[1:-1]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        # package loaders read through importlib.resources: the same from a checkout, a wheel or a zip
        loader=jinja2.PrefixLoader({"program": jinja2.PackageLoader("mpc_export.backends.mamba", "templates"),
                                    "ops": jinja2.PackageLoader("mpc_export.backends.mamba", "templates")}),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )


def render_program(graph: Graph, fx: FixedSpec, params: list[ParamFile], inputs: list[InputFile], debug: bool = False,
                   pattern: PatternFile | None = None) -> str:
    env = _environment()
    layout = Layout(graph, params, "cint" if fx.protocol.public_weights else "sint", pattern)
    used = []
    for node in graph.nodes:
        if node.spec.template not in used:
            used.append(node.spec.template)
    macros = {name: env.get_template(f"ops/{name}.mpc.j2").module for name in used}
    args = {node.name: node.spec.template_args(node, fx, layout) for node in graph.nodes}
    setups = [str(macros[n.spec.template].setup(args[n.name])).strip() for n in graph.nodes]
    calls = [str(macros[n.spec.template].call(args[n.name])).strip() for n in graph.nodes]
    param_reads = [
        {"channel": channel, "buffer": buf.name, "count": buf.size, "chunk": min(READ_CHUNK, buf.size), "path": path,
         "reader": "public" if fx.protocol.public_weights else "secret"}
        for buf, channel, path in layout.file_buffers
    ]
    if pattern is not None:
        size = int(pattern.values.size)
        param_reads.append({"channel": pattern.channel, "buffer": PATTERN_BUFFER, "count": size,
                            "chunk": min(READ_CHUNK, size), "path": pattern.path, "reader": "public_int"})
    input_size = _prod(graph.input_shape)
    executions, channel_reads = [], []
    for inp in inputs:
        read_input = {"channel": inp.channel, "buffer": "INPUT_STAGING", "count": input_size, "chunk": min(READ_CHUNK, input_size), "path": inp.path,
                      "reader": "secret"}
        reads = [read_input] + (param_reads if inp.execution == 0 else [])
        channel_reads.extend(reads)
        executions.append({"index": inp.execution, "reads": reads, "calls": calls})
    text = env.get_template("program/program.mpc.j2").render(
        program_name=f"mpc_export_{graph.name}",
        protocol=fx.protocol.as_dict(),
        runtime_check=runtime_check.template_args(),
        version=__version__,
        model_name=comment_text(graph.description),
        channel_reads=channel_reads,
        frac_bits=fx.frac_bits,
        total_bits=fx.total_bits,
        kappa=fx.kappa,
        public_weights=fx.protocol.public_weights,
        debug=debug,
        max_vector=max_vector(graph),
        op_preludes=[str(macros[name].prelude()).strip() for name in used],
        buffers=layout.buffers,
        op_setups=[s for s in setups if s],
        input_channel_base=inputs[0].channel - inputs[0].execution if inputs else 0,
        executions=executions,
        logits={"count": _prod(graph.output.shape), "buffer": layout.buffer(graph.output).name},
    )
    return text


def input_output_rounds(graph: Graph, fx: FixedSpec, params: list[ParamFile]) -> tuple[int, int]:
    """Rounds (network exchanges) the program spends on input and output, as the runtime counts them:
    (once per program: one per private-input instruction reading the secret parameters, READ_CHUNK values
    each; per execution: the input's private-input instructions and one opening per printed logit).
    Public reads (public weights, the sparsity pattern) exchange nothing. --debug prints, one opening per
    printed value, are not included."""
    def instructions(count: int) -> int:
        return -(-count // READ_CHUNK)

    parameters = 0 if fx.protocol.public_weights else sum(instructions(sum(pf.count for pf in tensors))
                                                          for _, _, tensors in files_of(params))
    return parameters, instructions(_prod(graph.input_shape)) + _prod(graph.output.shape)


def channel_open_order(params: list[ParamFile], inputs: list[InputFile], pattern: PatternFile | None = None) -> list[tuple[int, str]]:
    """(channel, path) in the order the program opens them: execution 0's input, the parameters, the
    public pattern (if any), then the inputs of executions 1.. (each read right before its execution runs)."""
    order = []
    for inp in inputs:
        order.append((inp.channel, inp.path))
        if inp.execution == 0:
            order.extend((channel, path) for path, channel, _ in files_of(params))
            if pattern is not None:
                order.append((pattern.channel, pattern.path))
    return order
