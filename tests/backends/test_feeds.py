"""Running a graph with bad inputs raises InputError naming the input (every backend shares this)."""

import re

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
    # integers for a float input, bools for an integer one (refused before)
    assert float(run(g, x=X.astype(np.int64), labels=L > 1)) == pytest.approx(2 * X.sum() + 2)


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
        ({"x": X, "labels": L.astype(np.float32)}, "labels", "float32"),
        ({"x": X, "labels": L.astype(np.float64).tolist()}, "labels", "float64"),
        ({"x": np.full((4, 3), "a"), "labels": L}, "x", "<U1"),
        ({"x": X.astype(np.complex64), "labels": L}, "x", "complex64"),
    ],
)
def test_wrong_dtype(graph, feeds, name, got):
    with pytest.raises(gc.InputError) as e:
        run(graph, **feeds)
    assert f"input {name!r}" in str(e.value) and f"dtype {got}" in str(e.value)


# -- the feeding policy (docs/ir.md, "Feeding inputs"), the same on every backend ----------------
BACKENDS = ["reference", "numba"]


def policy_graph():
    with gc.Graph("policy") as g:
        f = g.input("f", (3,))
        i = g.input("i", (3,), "int32")
        b = g.input("b", (3,), "bool")
        g.output("f", f * 1.0)
        g.output("i", i + 0)
        g.output("b", gc.logical_not(gc.logical_not(b)))
    return g


GOOD = {
    "f": np.array([0.5, 1.5, 2.5], np.float32),
    "i": np.array([1, 2, 3], np.int32),
    "b": np.array([True, False, True]),
}


def feed(backend, **changes):
    return gc.compile(policy_graph(), backend)({**GOOD, **changes})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "value",
    [
        [1, 2, 3],
        np.array([1, 2, 3], np.int64),
        np.array([1, 2, 3], np.uint8),
        np.array([1, 2, 3], np.uint64),
        np.array([1.0, 2.0, 3.0]),  # float64 -> float32 (rounds; documented)
        [True, False, True],
        [1, 2.0, True],
    ],
)
def test_float_input_takes_floats_ints_and_bools(backend, value):
    out = feed(backend, f=value)["f"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.asarray(value, np.float64).astype(np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "value",
    [[1, -2, 3], np.array([1, -2, 3], np.int64), np.array([1, 2, 3], np.uint64), np.array([1, 2, 3], np.int8),
     [True, False, True], np.array([2**31 - 1, -(2**31), 0])],
)  # fmt: skip
def test_int_input_takes_ints_and_bools_that_fit(backend, value):
    out = feed(backend, i=value)["i"]
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, np.asarray(value).astype(np.int64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "name, value, bad, dtype",
    [
        ("i", np.array([2**40, 1, 2]), "1099511627776", "int32"),  # wrapped to 0 before
        ("i", [2**40, 1, 2], "1099511627776", "int32"),
        ("i", np.array([-(2**31) - 1, 0, 0]), "-2147483649", "int32"),
        ("i", np.array([2**32, 1, 2], np.uint64), "4294967296", "int32"),
        ("i", [2**63, 1, 2], "9223372036854775808", "int32"),
        ("i", [2**70, 1, 2], "1180591620717411303424", "int32"),
        ("f", np.array([1e39, 0.0, 0.0]), "1e+39", "float32"),  # a finite float64 that would be inf
        ("f", [0.0, -1e300, 0.0], "-1e+300", "float32"),
        ("f", [2**1100, 0, 0], str(2**1100), "float32"),  # a Python int beyond float64
    ],
)
def test_value_that_does_not_fit_is_refused(backend, name, value, bad, dtype):
    msg = rf"^input '{name}' .*test_feeds.py:\d+\): value {re.escape(bad)} does not fit {dtype}$"
    with pytest.raises(gc.InputError, match=msg):
        feed(backend, **{name: value})


def test_uint64_beyond_int64_is_refused_for_an_int64_input():
    with gc.Graph("u") as g:
        k = g.input("k", (2,), "int64")
        g.output("k", k + 0)
    with pytest.raises(gc.InputError, match=r"input 'k' .*: value 9223372036854775808 does not fit int64"):
        gc.run(g, {"k": np.array([2**63, 1], np.uint64)})
    with pytest.raises(gc.InputError, match=r"input 'k' .*: value 9223372036854775808 does not fit int64"):
        gc.run(g, {"k": [2**63, -1]})  # NumPy would make this list float64
    np.testing.assert_array_equal(gc.run(g, {"k": np.array([2**63 - 1, 1], np.uint64)})["k"], [2**63 - 1, 1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "name, value, got, takes",
    [
        ("i", [1.0, 2.0, 3.0], "float64", "an integer input takes integers and bools"),
        ("i", np.array([1, 2, 3], np.float32), "float32", "an integer input takes integers and bools"),
        ("b", [1, 0, 1], "int64", "a bool input takes bools only"),
        ("b", np.array([1.0, 0.0, 1.0]), "float64", "a bool input takes bools only"),
    ],
)
def test_refused_kinds_say_what_the_input_takes(backend, name, value, got, takes):
    with pytest.raises(gc.InputError, match=rf"^input '{name}' .*: got an array of dtype {got}, .*\({takes}"):
        feed(backend, **{name: value})


@pytest.mark.parametrize("backend", BACKENDS)
def test_ragged_list_is_an_input_error_naming_the_input(backend):
    with gc.Graph("ragged") as g:
        x = g.input("x", ("batch", 2))
        g.output("y", x * 2.0)
    step = gc.compile(g, backend)
    with pytest.raises(gc.InputError, match=r"^input 'x' \(f32\[batch,2\]\) .*: got a ragged list \(rows of"):
        step(x=[[1.0, 2.0], [3.0]])
    with pytest.raises(gc.InputError, match=r"^input 'x' .*: got a list of Python objects"):
        step(x=[[1.0, None], [3.0, 4.0]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_empty_batches_compute_what_numpy_computes(backend):
    with gc.Graph("nan") as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 2), init="ones")
        g.output("y", gc.tanh(x @ w))
        g.output("total", gc.sum(x))
    step = gc.compile(g, backend)
    xv = np.array([[1.0, np.nan, 0.0], [0.5, 0.25, 0.0]], np.float32)
    out = step(x=xv)
    np.testing.assert_allclose(out["y"], np.tanh(xv @ np.ones((3, 2), np.float32)), rtol=1e-6)  # NaN where NumPy has it
    assert np.isnan(out["total"])
    empty = step(x=np.zeros((0, 3), np.float32))
    assert empty["y"].shape == (0, 2) and float(empty["total"]) == 0.0


def test_feeds_must_be_a_dict(graph):
    with pytest.raises(gc.InputError, match="dict"):
        gc.run(graph, [X, L])


def test_an_array_of_the_inputs_dtype_is_taken_as_it_is_and_others_are_converted(graph):
    from graphc.backends.feeds import check_feeds

    needed = [graph.inputs["x"], graph.inputs["labels"]]
    arrays, env = check_feeds(graph, {"x": X, "labels": L}, needed)
    assert arrays["x"] is X and arrays["labels"] is L and env == {"batch": 4}
    fortran, wide = np.asfortranarray(X), X.astype(np.float64)
    arrays, _ = check_feeds(graph, {"x": fortran, "labels": L.astype(np.int32)}, needed)
    assert arrays["x"].flags.c_contiguous and arrays["labels"].dtype == np.int64
    np.testing.assert_array_equal(arrays["x"], X)
    arrays, _ = check_feeds(graph, {"x": wide, "labels": L}, needed)
    assert arrays["x"].dtype == np.float32
    with pytest.raises(gc.InputError, match=re.escape("input 'x' (f32[batch,3])") + ".*expected shape"):
        check_feeds(graph, {"x": X[:, :2].copy(), "labels": L}, needed)
