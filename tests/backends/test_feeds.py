"""Running a graph with bad inputs raises InputError naming the input (every backend shares this)."""

import numpy as np
import pytest

import graphc as gc


def make_graph():
    with gc.Graph("feeds") as g:
        x = g.input("x", ("batch", 3))
        labels = g.input("labels", ("batch",), "int64")
        w = g.param("w", (3, 2), init="ones")
        g.output("loss", gc.sum(x @ w) + gc.sum(labels.astype("float32")))
    return g


@pytest.fixture
def graph():
    return make_graph()


X = np.arange(12, dtype=np.float32).reshape(4, 3)
L = np.array([0, 1, 2, 3], dtype=np.int64)


def run(g, **feeds):
    return gc.run(g, feeds)["loss"]


def test_good_feeds_run_and_convert():
    g = make_graph()
    assert float(run(g, x=X, labels=L)) == pytest.approx(2 * X.sum() + L.sum())
    # same kind, other width: converted (float64 -> float32, int32 -> int64), lists too
    assert float(run(g, x=X.astype(np.float64), labels=L.astype(np.int32))) == pytest.approx(2 * X.sum() + 6)
    assert float(run(g, x=X.tolist(), labels=L.tolist())) == pytest.approx(2 * X.sum() + 6)


def test_missing_input(graph):
    with pytest.raises(gc.InputError, match=r"missing input 'labels' \(labels: i64\[batch\]\)"):
        run(graph, x=X)


def test_extra_input(graph):
    with pytest.raises(gc.InputError, match=r"no input named 'y' \(inputs: x, labels\)"):
        run(graph, x=X, labels=L, y=X)


def test_wrong_shape(graph):
    with pytest.raises(gc.InputError) as e:
        run(graph, x=np.ones((4, 5), np.float32), labels=L)
    assert "input 'x'" in str(e.value) and "[batch,3]" in str(e.value) and "(4, 5)" in str(e.value)
    assert "test_feeds.py:" in str(e.value)  # where the input was declared


def test_wrong_rank(graph):
    with pytest.raises(gc.InputError, match=r"input 'x'.*rank 2.*got \(12,\)"):
        run(graph, x=X.reshape(-1), labels=L)


def test_inconsistent_symbolic_dimension(graph):
    with pytest.raises(gc.InputError) as e:
        run(graph, x=X, labels=np.zeros(5, np.int64))
    msg = str(e.value)
    assert "input 'labels'" in msg and "'batch' is 5 here but 4" in msg


@pytest.mark.parametrize(
    "feeds, name, got",
    [
        ({"x": X.astype(np.int64), "labels": L}, "x", "int64"),
        ({"x": X, "labels": L.astype(np.float32)}, "labels", "float32"),
        ({"x": np.full((4, 3), "a"), "labels": L}, "x", "<U1"),
        ({"x": X, "labels": L > 1}, "labels", "bool"),
    ],
)
def test_wrong_dtype(graph, feeds, name, got):
    with pytest.raises(gc.InputError) as e:
        run(graph, **feeds)
    assert f"input {name!r}" in str(e.value) and f"dtype {got}" in str(e.value)


def test_feeds_must_be_a_dict(graph):
    with pytest.raises(gc.InputError, match="dict"):
        gc.run(graph, [X, L])
