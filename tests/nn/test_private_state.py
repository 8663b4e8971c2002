"""The nn library, the CLI and the passes use other modules' objects through public names only:
an underscored attribute read or written on anything but `self`/`cls` must be one its own module
defines (a Layer calling another Layer's `_unbuild` is fine; a layer writing `graph._scope` or the
CLI reading `model._train` is not)."""

import ast
from pathlib import Path

import numpy as np

import graphc
from graphc import nn

ROOT = Path(graphc.__file__).parent
CHECKED = [*sorted((ROOT / "nn").rglob("*.py")), *sorted((ROOT / "cli").glob("*.py"))]
CHECKED += sorted((ROOT / "passes").glob("*.py"))


def _defined_here(tree) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
    return names


def _reach_ins(path: Path, root: Path = ROOT.parent) -> list[str]:
    tree = ast.parse(path.read_text())
    own = _defined_here(tree)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        if node.attr not in own:
            out.append(f"{path.relative_to(root)}:{node.lineno}: .{node.attr}")
    return out


def test_no_private_reach_ins():
    assert [r for f in CHECKED for r in _reach_ins(f)] == []


def test_the_checker_finds_a_reach_in(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(graph, model):\n    graph._scope = []\n    return model._train\n")
    assert _reach_ins(bad, tmp_path) == ["bad.py:2: ._scope", "bad.py:3: ._train"]


def test_model_train_step_is_the_compiled_training_step():
    model = nn.Model(nn.Sequential([nn.Dense(3)]), input_shape=(4,), backend="reference", seed=0)
    step = model.train_step
    assert step.graph.outputs["train/loss"] is not None and step.step == model.step == 0
    before = model.graph.values["sequential/dense/w"].copy()
    X, y = np.ones((2, 4), np.float32), np.array([0, 2])
    loss = float(step(x=X, y=y)[0])  # calling it trains: the weights move and the counter advances
    assert np.isfinite(loss) and model.step == 1
    assert not np.array_equal(before, model.graph.values["sequential/dense/w"])
