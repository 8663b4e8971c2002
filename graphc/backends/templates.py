"""Op templates -> Python statements, shared by the loop-generating backends (Numba CPU, CUDA).

An elementwise op's scalar template (OpDef.scalar, filled by graphc.backends.loopgen.expression)
is a Python expression in `math` functions. `node_statements` turns one node's template into
statements that compute it in the node's dtype: float literals become float32 (`F(...)`) in a
float32 kernel, conditional expressions are computed on both sides and selected (branch-free,
so a CPU loop vectorises; templates are pure, so evaluating both sides is harmless), and a
backend may swap `math` functions for its own (the CPU's vector exp/tanh). `body_lines` writes
the loads, statements and stores of one loop iteration, the loads and stores in the backend's
own indexing.

Generated code expects `F = np.float32` and `np` in its globals.
"""

import ast

import numpy as np

from graphc.backends.loopgen import LoopSpec, expression

__all__ = ["CAST", "literal", "temps", "node_statements", "body_lines"]

CAST = {"float32": "F", "float64": "np.float64", "int32": "np.int32", "int64": "np.int64", "bool": "np.bool_"}


def literal(value, dtype: str) -> str:
    """Source for a scalar constant of `dtype`."""
    v = np.asarray(value).item()
    if dtype == "bool":
        return repr(bool(v))
    if dtype.startswith("int"):
        return f"{CAST[dtype]}({int(v)})"
    v = float(v)
    text = "np.inf" if v == np.inf else "-np.inf" if v == -np.inf else "np.nan" if v != v else repr(v)
    return f"{CAST[dtype]}({text})"


class _Lower(ast.NodeTransformer):
    """Float literals to the kernel's float type, `math` functions to the backend's (`funcs`,
    in float32 kernels), if-expressions hoisted."""

    def __init__(self, f32: bool, names, funcs: dict):
        self.f32, self.names, self.funcs, self.stmts = f32, names, funcs, []

    def visit_Constant(self, node):
        if self.f32 and isinstance(node.value, float):
            return ast.Call(ast.Name("F", ast.Load()), [node], [])
        return node

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id == "F":
            return node  # already a float32 literal
        self.generic_visit(node)
        f = node.func
        if self.f32 and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "math":
            if f.attr in self.funcs:
                node.func = ast.Name(self.funcs[f.attr], ast.Load())
        return node

    def visit_IfExp(self, node):
        self.generic_visit(node)
        a, b = next(self.names), next(self.names)
        self.stmts.append(f"{a} = {ast.unparse(node.body)}")
        self.stmts.append(f"{b} = {ast.unparse(node.orelse)}")
        return ast.IfExp(node.test, ast.Name(a, ast.Load()), ast.Name(b, ast.Load()))


def temps():
    """Fresh local names t0, t1, ... for the hoisted sides of conditional expressions."""
    i = 0
    while True:
        yield f"t{i}"
        i += 1


def node_statements(node, operands: list[str], target: str, names, funcs: dict | None = None) -> list[str]:
    """Statements computing `target` = node's scalar template applied to `operands` (source
    expressions); `names` yields fresh local names (temps()); `funcs`: `math` function name ->
    the backend's replacement in float32 kernels."""
    text = expression(node, operands)
    f32 = node.dtype == "float32" or any(x.dtype == "float32" for x in node.inputs)
    low = _Lower(f32, names, funcs or {})
    tree = low.visit(ast.parse(text, mode="eval"))
    return [*low.stmts, f"{target} = {CAST[node.dtype]}({ast.unparse(tree.body)})"]


def body_lines(spec: LoopSpec, load, store, indent: str, funcs: dict | None = None):
    """Loads, statements and stores of one loop iteration; returns (lines, name of node id).

    load(k, mask) -> the source reading input k (mask: its broadcast dims); store(k) -> the
    target writing output k."""
    names_ = temps()
    names: dict[int, str] = {}
    lines = []
    for k, (x, mask) in enumerate(zip(spec.inputs, spec.bcast)):
        names[x.id] = f"x{k}"
        lines.append(f"x{k} = {load(k, mask)}")
    for k, n in enumerate(spec.nodes):
        ops = [names[x.id] if x.id in names else spec.scalars[x.id] for x in n.inputs]
        names[n.id] = f"v{k}"
        lines.extend(node_statements(n, ops, f"v{k}", names_, funcs))
    for k, n in enumerate(spec.outputs):
        lines.append(f"{store(k)} = {names[n.id]}")
    return [indent + s for s in lines], names
