"""A layer's first call or an optimizer's update graph that fails half-way leaves the graph as it
was: no parameters, variables, updates or taken scope names (Graph.undo_on_error), so a retry
builds exactly what a first success would have."""

import pytest

import graphc as gc
from graphc import nn
from graphc.errors import ShapeError


class FailsOnSecond(nn.optim.SGD):
    """SGD with momentum whose rule breaks at the second parameter (after its first slot)."""

    calls = 0

    def rule(self, p, grad, ctx):
        out = super().rule(p, grad, ctx)
        FailsOnSecond.calls += 1
        if FailsOnSecond.calls == 2:
            raise RuntimeError("rule failed half-way")
        return out


def _mlp():
    g = gc.Graph("m")
    with g:
        x = g.input("x", ("batch", 3))
        w, b = g.param("w", (3, 2)), g.param("b", (2,), "zeros")
        loss = gc.mean((x @ w + b) ** 2)
    return g, loss


def test_an_optimizer_failing_half_way_leaves_nothing_and_a_retry_builds_as_new():
    g, loss = _mlp()
    before = (dict(g.params), set(g.values), dict(g.updates), g.scope_counts)
    FailsOnSecond.calls = 0
    opt = FailsOnSecond(0.1, momentum=0.9)
    with pytest.raises(RuntimeError, match="half-way"):
        nn.training_graph(loss, opt)
    assert (dict(g.params), set(g.values), dict(g.updates), g.scope_counts) == before
    assert opt.graph is None and opt.state_names == []
    tg = nn.training_graph(loss, nn.optim.SGD(0.1, momentum=0.9))
    assert tg.state_names == ["sgd/step", "sgd/velocity/w", "sgd/velocity/b"]  # not sgd_1/...
    assert set(g.updates) == {"w", "b", *tg.state_names}


def test_a_layer_failing_its_first_call_frees_its_name():
    dense = nn.Dense(4)
    with gc.Graph("l") as g:
        with pytest.raises(ShapeError, match="concrete feature size"):
            dense(g.input("s", ("batch", "features")))
        assert g.scope_counts == {} and g.params == {}
        y = dense(g.input("x", ("batch", 3)))
    assert dense.scope == "dense" and set(g.params) == {"dense/w", "dense/b"}
    assert y.shape == ("batch", 4)
