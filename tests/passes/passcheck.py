"""Shared checks for pass tests: run a graph before and after a pass with the reference interpreter."""

import warnings

import numpy as np

import graphc as gc


def results(graph, feeds):
    """Every output and every update's new value, by name, without applying the updates."""
    names = [*graph.outputs, *(f"update:{k}" for k in graph.updates)]
    nodes = [*graph.outputs.values(), *graph.updates.values()]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        values = gc.run(graph, feeds, outputs=nodes, apply_updates=False) if nodes else []
    return dict(zip(names, values))


def assert_same(before, after, feeds, rtol=1e-5, atol=1e-6):
    """`after` computes what `before` computes (same output/update names, close values)."""
    assert set(after.outputs) == set(before.outputs)
    assert set(after.updates) == set(before.updates)
    assert after.values is before.values
    a, b = results(before, feeds), results(after, feeds)
    for k in a:
        assert b[k].shape == a[k].shape and b[k].dtype == a[k].dtype, k
        np.testing.assert_allclose(b[k], a[k], rtol=rtol, atol=atol, err_msg=k)
    return a, b


def live_ops(graph):
    """The ops of the nodes outputs/updates need, in order (sources left out)."""
    return [n.op for n in graph.live_nodes() if n.op not in ("input", "param", "const")]
