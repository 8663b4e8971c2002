"""The IR sits below the op library and the graph file format: no module of graphc.ir imports
graphc.ops or graphc.io (lazily or not). graphc.ops binds itself for Node.opdef and the
operators, and graphc.io registers itself behind Graph.save and Graph.load, instead."""

import ast
from pathlib import Path

import numpy as np

import graphc as gc
import graphc.io.graph_file
import graphc.ir
import graphc.ir.graph
import graphc.ir.node

IR_DIR = Path(graphc.ir.__file__).parent


def _imports_of(path: Path, prefix: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return sorted(n for n in names if n == prefix or n.startswith(prefix + "."))


def test_no_ir_module_imports_graph_files():
    found = {f.name: _imports_of(f, "graphc.io") for f in sorted(IR_DIR.glob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


def test_no_ir_module_imports_the_op_library():
    found = {f.name: _imports_of(f, "graphc.ops") for f in sorted(IR_DIR.glob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


def test_nodes_reach_the_op_library_that_graphc_ops_bound():
    from graphc.ops import api, registry

    with gc.Graph("ops") as g:
        x = g.input("x", (2, 3))
        y = (x * 2.0).sum(axis=1)
    assert y.opdef is registry.get("sum") and x.opdef is registry.get("input")
    assert y.op == "sum" and y.inputs[0].op == "mul" and y.shape == (2,)
    assert graphc.ir.node._OPS.functions is api
    np.testing.assert_allclose(gc.run(g, {"x": np.ones((2, 3), np.float32)}, outputs=y), [6.0, 6.0])


def test_graph_save_and_load_go_through_the_registered_file_format(tmp_path, monkeypatch):
    assert graphc.ir.graph._files() is graphc.io.graph_file
    with gc.Graph("saved") as g:
        x = g.input("x", (2,))
        g.output("y", x * g.param("w", (2,), "ones"))
    calls = []

    class Recording:
        def save_graph(self, graph, path):
            calls.append(("save", graph.name))
            graphc.io.graph_file.save_graph(graph, path)

        def load_graph(self, path):
            calls.append(("load", Path(path).name))
            return graphc.io.graph_file.load_graph(path)

    monkeypatch.setattr(graphc.ir.graph, "_file_format", Recording())
    g.save(tmp_path / "g.json")
    back = gc.Graph.load(tmp_path / "g.json")
    assert calls == [("save", "saved"), ("load", "g.json")]
    assert back.text() == g.text()
    np.testing.assert_array_equal(back.values["w"], g.values["w"])
