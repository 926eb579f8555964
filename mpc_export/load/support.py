"""The table of what exports, generated from the registries (the ONNX front end's ATTRIBUTE_RULES,
HANDLERS, IGNORED and REWRITES; the IR's executable ops): docs/support.md holds its output between
``<!-- support-table -->`` markers, and a test keeps the two equal.

    python -m mpc_export.load.support        # print the table (markdown)
"""

from __future__ import annotations

import inspect
import sys

from ..ops import OPS
from .onnx_frontend import ANY, ATTRIBUTE_RULES, HANDLERS, IGNORED, REWRITES

START, END = "<!-- support-table -->", "<!-- /support-table -->"


def _attributes(rules: dict) -> str:
    if not rules:
        return "(none)"
    return ", ".join(name if rule is ANY else f"{name} ({rule})" for name, rule in sorted(rules.items()))


def _summary(op) -> str:
    """The first paragraph of the op's module docstring, on one line."""
    doc = inspect.getdoc(sys.modules[op.__module__]) or ""
    return " ".join(doc.split("\n\n")[0].split())


def support_table() -> str:
    lines = ["| ONNX op | attributes honoured (accepted values; any other attribute or value is refused by name) |",
             "| --- | --- |"]
    lines += [f"| {op} | {_attributes(ATTRIBUTE_RULES.get(op, {}))} |" for op in sorted(HANDLERS)]
    lines += ["", f"Passed through in inference: {', '.join(sorted(IGNORED))}. Constant and shape arithmetic (any node "
              "whose inputs are constants or static shapes: Shape, Gather, Unsqueeze, Concat, Cast, ConstantOfShape, "
              "...) is evaluated at load time by onnx's reference evaluator.", "",
              "| refused | what to do instead |", "| --- | --- |"]
    lines += [f"| {key} | {text} |" for key, text in sorted(REWRITES.items())]
    lines += ["", "| the program executes (IR op) | |", "| --- | --- |"]
    lines += [f"| {name} | {_summary(op)} |" for name, op in sorted(OPS.items()) if op.executable]
    return "\n".join(lines) + "\n"


def main() -> None:
    print(support_table(), end="")


if __name__ == "__main__":
    main()
