"""Which compiled steps write the graph's updates (train): the whole graph does; a step asked
for chosen outputs (an evaluation) does not, unless apply_updates=True. The same on every
backend, and for gc.run."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn

BACKENDS = ["reference", "numba"]
RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 4)).astype(np.float32)
Y = RNG.integers(0, 3, 8)


def training():
    """docs/nn.md's pattern: a training graph that also has an evaluation output."""
    with gc.Graph("train", seed=0) as g:
        x = g.input("x", ("batch", 4))
        y = g.input("y", ("batch",), "int64")
        logits = nn.Dense(3)(x)
        loss = nn.losses.cross_entropy(logits, y)
        acc = nn.metrics.accuracy(logits, y)
    tg = nn.training_graph(loss, nn.optim.Adam(1e-2))
    g.output("loss", loss)
    return g, tg, loss, acc


def snapshot(g):
    return {k: v.copy() for k, v in g.values.items()}


def changed(g, before):
    return sorted(k for k, v in g.values.items() if not np.array_equal(v, before[k]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiling_an_evaluation_output_does_not_train(backend):
    g, _, loss, acc = training()
    before = snapshot(g)
    evaluate = gc.compile(g, backend, outputs=[acc])  # trained 21 arrays of an MLP before
    for _ in range(3):
        evaluate(x=X, y=Y)
    gc.compile(g, backend, outputs=[loss, acc])(x=X, y=Y)
    gc.compile(g, backend, outputs="loss")(x=X, y=Y)
    assert changed(g, before) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_steps_change_the_weights_and_the_optimizer_state(backend):
    g, tg, loss, acc = training()
    expected = sorted(g.updates)  # the weights, the bias, Adam's moments and step counter
    assert len(expected) == 7 and "dense/w" in expected
    for step in (
        gc.compile(g, backend),  # the whole graph: its updates are part of it
        gc.compile(g, backend, outputs=[loss], apply_updates=True),
        tg.compile(backend),  # TrainingGraph.compile is the training step
    ):
        before = snapshot(g)
        step(x=X, y=Y)
        assert changed(g, before) == expected, step
    before = snapshot(g)
    gc.compile(g, backend, apply_updates=False)(x=X, y=Y)
    tg.compile(backend, apply_updates=False)(x=X, y=Y)
    assert changed(g, before) == []


def test_run_follows_the_same_policy():
    g, _, loss, acc = training()
    before = snapshot(g)
    gc.run(g, {"x": X, "y": Y}, outputs=[acc])
    gc.run(g, {"x": X, "y": Y}, outputs=loss)
    assert changed(g, before) == []
    gc.run(g, {"x": X, "y": Y}, outputs=loss, apply_updates=True)
    assert changed(g, before) == sorted(g.updates)
    before = snapshot(g)
    gc.run(g, {"x": X, "y": Y})
    assert changed(g, before) == sorted(g.updates)
