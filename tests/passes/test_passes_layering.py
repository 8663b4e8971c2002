"""The passes sit below the backends: they import nothing from graphc.backends (lazily or not)."""

import ast
from pathlib import Path

import graphc.passes

PASSES_DIR = Path(graphc.passes.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_pass_module_imports_a_backend():
    offenders = {
        f.name: sorted(m for m in _imported_modules(f) if m.startswith("graphc.backends"))
        for f in sorted(PASSES_DIR.glob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_run_context_is_one_class_for_backends_and_folding():
    from graphc.backends.base import RunContext as BackendsRunContext
    from graphc.ops.context import RunContext

    assert BackendsRunContext is RunContext
    ctx = RunContext({}, {}, {"batch": 4}, 0)
    assert ctx.concrete(("batch", 3)) == (4, 3)
