"""NumPy defers to nodes: `array op node` is a node; NumPy functions on nodes, and `if node:`,
raise a SymbolicValueError naming the node, the line and the graphc op to use."""

import operator
import re
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.errors import SymbolicValueError

FILE = "test_numpy_interop.py"
A = np.array([1.5, -2.0, 0.5], np.float32)
XV = np.array([0.5, 2.0, 4.0], np.float32)


def here() -> int:
    return sys._getframe(1).f_lineno + 1


@pytest.mark.parametrize(
    "op", [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow, operator.lt,
           operator.le, operator.gt, operator.ge],
)  # fmt: skip
def test_array_on_the_left_of_an_operator_is_a_node(op):
    with gc.Graph("left") as g:
        x = g.input("x", (3,))
        y = op(A, x)
    assert isinstance(y, gc.Node)
    assert len(g.nodes) == 3  # x, the array as one constant, the op: not one node per element
    np.testing.assert_allclose(gc.run(g, {"x": XV}, outputs=y), op(A, XV), rtol=1e-6)


def test_numpy_scalars_and_matmul_on_the_left():
    with gc.Graph("left2") as g:
        x = g.input("x", (3,))
        m = g.input("m", (3, 2))
        ys = [np.float64(2.0) * x, np.float32(3.0) - x, np.int64(2) + x, A @ m]
    assert all(isinstance(y, gc.Node) for y in ys)
    mv = np.arange(6, dtype=np.float32).reshape(3, 2)
    got = gc.run(g, {"x": XV, "m": mv}, outputs=ys)
    for a, b in zip(got, [2.0 * XV, 3.0 - XV, 2 + XV, A @ mv]):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize(
    "call, name, hint",
    [
        (np.exp, "exp", "use gc.exp"),
        (np.sum, "sum", "use gc.sum"),
        (np.abs, "abs", "use gc.abs"),
        (np.max, "max", "use gc.max"),
        (np.tanh, "tanh", "use gc.tanh"),
        (lambda x: np.add(A, x, out=np.empty(3, np.float32)), "add", "use gc.add"),
        (lambda x: np.clip(x, 0, 1), "clip", "use graphc's ops"),
        (np.asarray, "asarray", r"run the graph \(gc.run, gc.compile\)"),
        (lambda x: A == x, "equal", "use gc.equal"),
    ],
)
def test_numpy_functions_on_nodes_name_the_graphc_op(call, name, hint):
    with gc.Graph("np") as g:
        decl = here()
        x = g.input("x", (3,))
        with pytest.raises(SymbolicValueError) as e:
            line = here()
            call(x)
    msg = str(e.value)
    assert msg.startswith(f"NumPy's {name} was called on graph node x (declared at ")
    assert f"{FILE}:{decl})" in msg
    used = line if call.__name__ != "<lambda>" else r"\d+"  # a lambda's NumPy call is on its own line
    assert re.search(rf"\) at tests/ir/{FILE}:{used}; NumPy cannot compute with a node", msg)
    assert re.search(f": {hint}", msg)
    assert isinstance(e.value, TypeError)  # what NumPy raised before, for code that catches that


def test_if_node_names_the_node_and_both_lines():
    with gc.Graph("truth") as g:
        decl = here()
        x = g.input("x", (3,))
        with pytest.raises(SymbolicValueError) as e:
            line = here()
            if x > 0:
                pass
    msg = str(e.value)
    assert msg.startswith(f"the truth value of graph node greater#2 (declared at tests/ir/{FILE}:{line}) is not known")
    assert f"(asked at tests/ir/{FILE}:{line}); use graphc.where(cond, a, b) instead of if/and/or" in msg
    assert isinstance(e.value, gc.GraphcError) and isinstance(e.value, TypeError)
    with pytest.raises(SymbolicValueError, match=rf"graph node x \(declared at .*{FILE}:{decl}\)"):
        bool(x)
