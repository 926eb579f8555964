"""The package's layers import only downward: ops/ is the vocabulary every stage uses, so it imports no
stage; the IR sits on ops; the stages sit on both; only the CLI sees everything. Checked on the source
(every `from ..x import` / `from mpc_export.x import`, lazy imports inside functions included)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mpc_export"

# each top-level module or subpackage, and the ones it may import
FOUNDATION = {"errors", "fixedpoint", "compiled", "manifest", "__init__"}
ALLOWED = {
    "errors": set(),
    "fixedpoint": {"errors"},
    "compiled": set(),  # numba kernels' decorator and thread helper
    "manifest": {"errors", "fixedpoint"},  # manifest.json as typed records
    "ops": {"errors", "fixedpoint", "compiled"},
    "ir": {"errors", "fixedpoint", "compiled", "ops"},
    "load": FOUNDATION | {"ops", "ir"},
    "fold": FOUNDATION | {"ops", "ir"},
    "quantize": FOUNDATION | {"ops", "ir"},
    "reference": FOUNDATION | {"ops", "ir"},
    "export": FOUNDATION | {"ops", "ir"},
    "verify": FOUNDATION | {"ops", "ir", "load", "fold", "quantize", "reference", "export"},
    "run": FOUNDATION | {"ops", "ir", "export"},  # hand-off, lock, logs: what every runner shares
    "backends": FOUNDATION | {"ops", "ir", "load", "fold", "quantize", "reference", "export", "verify", "run"},
    "deploy": FOUNDATION | {"ops", "ir", "export", "verify", "run", "backends"},
    "pipeline": FOUNDATION | {"ops", "ir", "load", "fold", "quantize", "reference", "export", "verify", "run", "backends", "deploy"},
    "cli": None,  # the top: anything
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    layer = _layer(path)
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 0: a top-level module, 1: inside a subpackage
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 < depth and node.level == 1:
                    continue  # within the same subpackage
                if node.module is None:
                    targets = [alias.name for alias in node.names]
                else:
                    targets = [node.module.split(".")[0]]
            elif node.module and node.module.startswith("mpc_export."):
                targets = [node.module.split(".")[1]]
            else:
                continue
            for target in targets:
                if target not in ALLOWED:
                    target = "__init__"  # a name of the package itself (its version)
                if target != layer:
                    yield node.lineno, target


def test_every_layer_imports_only_downward():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(path)
        allowed = ALLOWED.get(layer, set()) if layer != "__init__" else None
        if allowed is None:
            continue
        for line, target in _imports(path):
            if target != "__init__" and target not in allowed:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} ({layer}) imports {target}")
    assert not problems, "\n".join(problems)


def test_each_op_has_its_mamba_snippet():
    from mpc_export.ops import OPS

    for name, spec in OPS.items():
        if spec.executable:
            assert (PACKAGE / "backends" / "mamba" / "templates" / f"{spec.template}.mpc.j2").is_file(), name
