"""g.output names a result once: naming another node with a taken name is an error unless
replace=True (it silently replaced the first before)."""

import sys

import numpy as np
import pytest

import graphc as gc

FILE = "test_outputs.py"


def here() -> int:
    return sys._getframe(1).f_lineno + 1


def test_second_output_with_a_taken_name_is_an_error():
    with gc.Graph("outs") as g:
        x = g.input("x", (2,))
        first_line = here()
        a = g.output("y", x * 2.0)
        b = x * 3.0
        with pytest.raises(gc.GraphStructureError) as e:
            line = here()
            g.output("y", b)
    assert str(e.value) == (
        f"output 'y' of graph 'outs' is already {a.label} (declared at tests/ir/{FILE}:{first_line}); "
        f"pass replace=True to make it {b.label} (declared at tests/ir/{FILE}:{line})"
    )
    assert g.outputs == {"y": a}
    np.testing.assert_array_equal(gc.run(g, {"x": [1.0, 2.0]})["y"], [2.0, 4.0])


def test_replace_true_replaces_and_naming_the_same_node_again_is_fine():
    with gc.Graph("outs2") as g:
        x = g.input("x", (2,))
        a = g.output("y", x * 2.0)
        assert g.output("y", a) is a  # the same node: nothing changes
        b = g.output("y", x * 3.0, replace=True)
    assert g.outputs == {"y": b}
    np.testing.assert_array_equal(gc.run(g, {"x": [1.0, 2.0]})["y"], [3.0, 6.0])
