"""Bad input to gc.scan: each a clear error naming scan, the shapes and the user's line; nothing is
added to the graph by a scan that fails."""

import re

import numpy as np
import pytest

import graphc as gc
from graphc.errors import AttributeValueError, DTypeError, GraphStructureError, ShapeError
from graphc.ir.node import TupleType
from graphc.ops.registry import get

HERE = re.escape(__file__.rsplit("/", 1)[-1])


def line() -> str:
    """The ' (declared at this_file:N' suffix matched loosely (N: any line of this file)."""
    return rf"\(declared at [^)]*{HERE}:\d+\)"


@pytest.fixture
def g():
    g = gc.Graph("g")
    with g:
        g.input("xs", (4, 2, 3))
        g.input("ys", (5, 2))
        g.input("h0", (2, 3))
        g.input("w", (3, 3))
    return g


def nodes(g):
    return g.inputs["xs"], g.inputs["ys"], g.inputs["h0"], g.inputs["w"]


def step(h, x):
    return h, x


def test_a_carry_whose_shape_changes_names_the_carry_and_both_types(g):
    xs, _, h0, _ = nodes(g)
    with g, pytest.raises(ShapeError, match=r"^scan: carry 0 \(h0\) is f32\[2,3\] in init but the body returns "
                          r"f32\[2,6\] for it; a carry keeps its shape and dtype " + line()):  # fmt: skip
        gc.scan(lambda h, x: (gc.concat([h, h], 1), h), h0, xs)


def test_a_carry_whose_dtype_changes_names_both_types(g):
    xs, _, h0, _ = nodes(g)
    with g, pytest.raises(DTypeError, match=r"carry 1 \(h0\) is f32\[2,3\] in init but the body returns f64\[2,3\]"):
        gc.scan(lambda c, x: ((c[0], gc.cast(c[1], "float64")), x), (h0, h0), xs)


def test_xs_of_different_lengths_name_both(g):
    xs, ys, h0, _ = nodes(g)
    with g, pytest.raises(ShapeError, match=r"^scan: xs have different lengths: xs 0 is f32\[4,2,3\], xs 1 is "
                          r"f32\[5,2\] " + line()):  # fmt: skip
        gc.scan(step, h0, (xs, ys))


def test_length_must_agree_with_xs(g):
    xs, _, h0, _ = nodes(g)
    with g, pytest.raises(ShapeError, match=r"^scan: length=3 but xs 0 is f32\[4,2,3\]"):
        gc.scan(step, h0, xs, length=3)


@pytest.mark.parametrize("reverse", [1, "yes", None, np.bool_(True)])
def test_reverse_of_the_wrong_type(g, reverse):
    xs, _, h0, _ = nodes(g)
    with g, pytest.raises(AttributeValueError, match=r"^scan: reverse must be True or False, got .* " + line()):
        gc.scan(step, h0, xs, reverse=reverse)


@pytest.mark.parametrize("length", [2.0, "4", True, -1])
def test_length_of_the_wrong_type(g, length):
    xs, _, h0, _ = nodes(g)
    with g, pytest.raises(AttributeValueError, match=r"^scan: length must be a non-negative int, got " + ".*" + line()):
        gc.scan(step, h0, xs, length=length)


def test_no_xs_and_no_length(g):
    _, _, h0, _ = nodes(g)
    with g, pytest.raises(AttributeValueError, match=r"^scan: give xs or length= \(the number of steps\)"):
        gc.scan(step, h0)


def test_a_body_returning_something_other_than_nodes(g):
    xs, _, h0, _ = nodes(g)
    with g:
        with pytest.raises(GraphStructureError, match=r"^scan: the body's y must be a node, a tuple/list of nodes "
                           r"or None, got float 1.0 " + line()):  # fmt: skip
            gc.scan(lambda h, x: (h, 1.0), h0, xs)
        with pytest.raises(GraphStructureError, match=r"^scan: the body must return a pair \(new carry, y\), got "
                           r"node c0: f32\[2,3\]"):  # fmt: skip
            gc.scan(lambda h, x: h, h0, xs)
        with pytest.raises(GraphStructureError, match=r"the body's new carry 1 must be a graph node, got str 'h'"):
            gc.scan(lambda c, x: ((c[0], "h"), x), (h0, h0), xs)


def test_a_carry_of_another_structure_than_init(g):
    xs, _, h0, _ = nodes(g)
    with g:
        with pytest.raises(GraphStructureError, match=r"^scan: the body returned as new carry a tuple of 2 nodes "
                           r"\(f32\[2,3\], f32\[2,3\]\), but init is a node \(f32\[2,3\]\) " + line()):  # fmt: skip
            gc.scan(lambda h, x: ((h, h), x), h0, xs)
        with pytest.raises(GraphStructureError, match=r"new carry a node \(f32\[2,3\]\), but init is a tuple of 2"):
            gc.scan(lambda c, x: (c[0], x), (h0, h0), xs)
        with pytest.raises(GraphStructureError, match=r"new carry a list of 2 nodes .*, but init is a tuple of 2"):
            gc.scan(lambda c, x: (list(c), x), (h0, h0), xs)


def test_a_body_reading_a_node_of_an_unrelated_graph(g):
    xs, _, h0, _ = nodes(g)
    with gc.Graph("other") as other:
        v = other.input("v", (3, 3))
    with g, pytest.raises(GraphStructureError, match=r"^scan: in the body \(c0: f32\[2,3\], x0: f32\[2,3\]\): "
                          r"matmul: input v belongs to graph 'other', which is neither the graph being built "
                          r"\('g/scan'\) nor one enclosing it " + line()):  # fmt: skip
        gc.scan(lambda h, x: (h @ v, x), h0, xs)


def test_an_op_failing_in_the_body_names_scan_the_shapes_and_the_body_line(g):
    xs, _, h0, _ = nodes(g)
    with g, pytest.raises(ShapeError, match=r"^scan: in the body \(c0: f32\[2,3\], x0: f32\[2,3\]\): "
                          r"matmul\(f32\[2,3\], f32\[2,3\]\): inner dimensions differ"):  # fmt: skip
        gc.scan(lambda h, x: (h @ x, x), h0, xs)


def test_init_and_xs_must_be_nodes(g):
    xs, _, h0, _ = nodes(g)
    with g:
        with pytest.raises(GraphStructureError, match=r"^scan: init must be a node or a tuple/list of nodes, got "
                           r"float 0.0"):  # fmt: skip
            gc.scan(step, 0.0, xs)
        with pytest.raises(GraphStructureError, match=r"xs must be a node, a tuple/list of nodes or None, got an "
                           r"array of shape \(3, 2\) \(make it a node with gc.constant\)"):  # fmt: skip
            gc.scan(step, h0, np.zeros((3, 2)))
        with pytest.raises(GraphStructureError, match=r"^scan: init 1 must be a graph node, got int 3"):
            gc.scan(step, (h0, 3), xs)
        with pytest.raises(ShapeError, match=r"^scan: xs 0 \(.*: f32\[\]\) has no leading axis to scan over"):
            gc.scan(step, h0, gc.sum(xs))
        with pytest.raises(GraphStructureError, match=r"^scan: f must be a function of \(carry, x\), got int"):
            gc.scan(3, h0, xs)
        parts = gc.split(xs, 2, axis=1)[0].inputs[0]
        with pytest.raises(GraphStructureError, match=r"^scan: xs 0 \(split#\d+\) has several outputs; read one"):
            gc.scan(step, h0, parts)
        with pytest.raises(GraphStructureError, match=r"^scan: init 0 \(split#\d+\) has several outputs; read one"):
            gc.scan(step, parts, xs)


def test_a_failed_scan_adds_nothing_to_the_graph(g):
    xs, _, h0, w = nodes(g)
    before = len(g.nodes)
    with g, pytest.raises(ShapeError):
        gc.scan(lambda h, x: (gc.concat([h @ w, h], 1), h), h0, xs)
    assert len(g.nodes) == before


def test_the_shape_rule_refuses_inputs_that_do_not_fit_the_body(g):
    """The infer rule guards nodes rebuilt by passes and graph files, not only gc.scan's."""
    xs, ys, h0, w = nodes(g)
    with g:
        h, _ = gc.scan(lambda h, x: (h @ w + x, h), h0, xs)
    node = h.inputs[0]
    infer = get("scan").infer
    assert isinstance(infer(list(node.inputs), node.attrs), TupleType)
    with pytest.raises(ShapeError, match=r"xs 0 is f32\[5,2\], not scanned over a leading axis of length 4"):
        infer([h0, ys, w], node.attrs)
    with pytest.raises(ShapeError, match=r"carry 0 is f32\[3,3\] but the body's input is f32\[2,3\]"):
        infer([w, xs, w], node.attrs)
    with pytest.raises(AttributeValueError, match=r"which does not fit 1 carries, 1 xs and 2 inputs"):
        infer([h0, xs], node.attrs)
