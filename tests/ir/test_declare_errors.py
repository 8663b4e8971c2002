"""Mismatches are caught when a node is declared; messages name op, shapes and the user's line."""

import sys

import pytest

import graphc as gc
from graphc.errors import AttributeValueError

FILE = "test_declare_errors.py"


def here() -> int:
    """The line number of the caller's next line (where the bad node is declared)."""
    return sys._getframe(1).f_lineno + 1


@pytest.fixture
def g():
    with gc.Graph("errs") as graph:
        yield graph


def test_broadcast_shape_mismatch(g):
    x, y = g.input("x", (3, 4)), g.input("y", (5,))
    with pytest.raises(gc.ShapeError) as e:
        line = here()
        x + y
    msg = str(e.value)
    assert msg.startswith("add(f32[3,4], f32[5]): ") and "[3,4]" in msg and "[5]" in msg
    assert f"{FILE}:{line}" in msg


def test_symbolic_dims_do_not_broadcast_with_other_sizes(g):
    x, y = g.input("x", ("batch", 4)), g.input("y", (3, 4))
    with pytest.raises(gc.ShapeError) as e:
        line = here()
        gc.mul(x, y)
    assert "mul(f32[batch,4], f32[3,4])" in str(e.value) and f"{FILE}:{line}" in str(e.value)


def test_matmul_inner_dimension(g):
    a, b = g.input("a", (2, 3)), g.input("b", (4, 5))
    with pytest.raises(gc.ShapeError) as e:
        line = here()
        a @ b
    msg = str(e.value)
    assert msg.startswith("matmul(f32[2,3], f32[4,5])") and "inner dimensions differ: 3" in msg
    assert f"{FILE}:{line}" in msg


def test_float_op_on_integers(g):
    i = g.input("i", (3,), "int32")
    with pytest.raises(gc.DTypeError) as e:
        line = here()
        gc.exp(i)
    msg = str(e.value)
    assert msg.startswith("exp(i32[3])") and "int32" in msg and f"{FILE}:{line}" in msg


def test_where_condition_must_be_bool(g):
    x = g.input("x", (2, 2))
    with pytest.raises(gc.DTypeError) as e:
        line = here()
        gc.where(x, x, x)
    msg = str(e.value)
    assert msg.startswith("where") and "bool" in msg and "f32[2,2]" in msg and f"{FILE}:{line}" in msg


def test_bad_axis(g):
    x = g.input("x", (3, 4))
    with pytest.raises(AttributeValueError) as e:
        line = here()
        gc.sum(x, axis=2)
    msg = str(e.value)
    assert msg.startswith("sum") and "axis 2" in msg and "rank 2" in msg and "f32[3,4]" in msg
    assert f"{FILE}:{line}" in msg
    with pytest.raises(AttributeValueError) as e:
        line = here()
        gc.softmax(x, axis=-3)
    msg = str(e.value)
    assert msg.startswith("softmax") and "axis -3" in msg and "f32[3,4]" in msg and f"{FILE}:{line}" in msg


def test_reshape_size_mismatch(g):
    x = g.input("x", (3, 4))
    with pytest.raises(gc.ShapeError) as e:
        line = here()
        gc.reshape(x, (5, 3))
    assert str(e.value).startswith("reshape(f32[3,4])") and "[5,3]" in str(e.value)
    assert f"{FILE}:{line}" in str(e.value)


def test_failed_declaration_adds_no_node(g):
    x, y = g.input("x", (3, 4)), g.input("y", (5,))
    before = len(g.nodes)
    with pytest.raises(gc.ShapeError):
        x + y
    assert len(g.nodes) == before


def test_ops_reject_non_node_inputs_naming_the_op_and_line():
    with pytest.raises(gc.GraphcError, match=rf"relu: input 0 must be a graph node, got str.*{FILE}:\d+"):
        gc.relu("text")


def test_error_classes_are_exported_at_the_top_level():
    import inspect

    import graphc.errors as errors

    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.GraphcError)]
    assert {"AttributeValueError", "IndexRangeError", "TrainingError", "SymbolicValueError"} <= {
        c.__name__ for c in classes
    }
    for cls in classes:
        assert getattr(gc, cls.__name__) is cls and cls.__name__ in gc.__all__, cls
    assert gc.TrainingError is gc.nn.TrainingError
