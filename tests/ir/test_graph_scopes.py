"""Graph's public scope and rollback methods (what layers, optimizers, passes and graph files use
instead of writing the graph's private fields)."""

import numpy as np
import pytest

import graphc as gc


def test_at_scope_reenters_a_recorded_scope_from_anywhere():
    with gc.Graph("s") as g:
        x = g.input("x", (2,))
        with g.scope("net"), g.scope("dense", unique=True) as path:
            pass
        with g.scope("elsewhere"):
            with g.at_scope(path) as p:
                y = x * 2.0
                w = g.param("w", (2,), "zeros")
            z = x + 1.0
        with g.at_scope(""):
            top = x - 1.0
    assert p == path == "net/dense"
    assert y.scope == "net/dense" and w.name == "net/dense/w"
    assert z.scope == "elsewhere" and top.scope == ""
    assert g.current_scope == ""


def test_at_scope_restores_the_scope_when_the_block_raises():
    with gc.Graph("s") as g, g.scope("outer"):
        with pytest.raises(RuntimeError), g.at_scope("a/b"):
            raise RuntimeError
        assert g.current_scope == "outer"


def test_scope_counts_is_a_copy_and_reserved_names_are_not_reused():
    g = gc.Graph("s")
    with g.scope("dense", unique=True):
        pass
    counts = g.scope_counts
    assert counts == {"dense": 1}
    counts["dense"] = 99  # a copy: the graph's counts are its own
    assert g.scope_counts == {"dense": 1}
    h = gc.Graph("t")
    h.reserve_scope_names({"dense": 2, "conv": 1})
    h.reserve_scope_names({"dense": 1})  # never lowers a count
    with h.scope("dense", unique=True) as a, h.scope("conv", unique=True) as b:
        pass
    with h.scope("fresh", unique=True) as c:
        pass
    assert (a, b, c) == ("dense_2", "dense_2/conv", "fresh")
    assert h.scope_counts == {"dense": 3, "conv": 1, "dense_2/conv": 1, "fresh": 1}


def test_a_rewritten_graph_keeps_the_scope_counts():
    g = gc.Graph("s")
    with g:
        x = g.input("x", (2,))
        with g.scope("dense", unique=True):
            g.output("y", x * 2.0)
    g2 = gc.optimize(g)
    with g2.scope("dense", unique=True) as s:
        pass
    assert s == "dense_1"


def test_undo_on_error_removes_what_the_block_added_and_restores_updates():
    with gc.Graph("u") as g:
        a = g.param("a", (2,), "ones")
        keep = g.variable("keep", (2,))
        g.update(keep, keep + 1.0)
        old_update = g.updates["keep"]
        with pytest.raises(ValueError, match="half-way"), g.undo_on_error():
            b = g.param("b", (2,), "zeros")
            g.variable("c", ())
            g.update(a, a - b)
            g.update(keep, keep * 2.0)
            raise ValueError("half-way")
    assert list(g.params) == ["a", "keep"] and list(g.values) == ["a", "keep"]
    assert g.updates == {"keep": old_update}
    np.testing.assert_array_equal(g.values["a"], np.ones(2, np.float32))
    with g.undo_on_error():  # no error: everything stays
        g.param("d", (1,), "zeros")
    assert "d" in g.params and "d" in g.values


def test_undo_on_error_frees_the_unique_scope_names_the_block_took():
    g = gc.Graph("n")
    with g.scope("kept", unique=True):
        pass
    with pytest.raises(KeyError), g.undo_on_error(), g.scope("dense", unique=True) as name:
        raise KeyError
    assert name == "dense" and g.scope_counts == {"kept": 1}
    with g.scope("dense", unique=True) as again:
        pass
    assert again == "dense"
