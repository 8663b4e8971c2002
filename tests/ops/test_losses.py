"""Losses: values vs NumPy formulas (incl. huge logits), gradients vs finite differences, errors."""

import inspect
import math

import numpy as np
import pytest
from gradcheck import check_grad, check_second_order

import graphc as gc
from graphc.errors import IndexRangeError
from graphc.ops.registry import get

rng = np.random.default_rng(0)


def _run(build, **arrays):
    with gc.Graph() as g:
        nodes = {k: g.input(k, v.shape, str(v.dtype)) for k, v in arrays.items()}
        out = build(**nodes)
    return gc.run(g, arrays, outputs=out)


def _log_softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _np_ce_labels(x, y, axis=-1):
    lsm = np.moveaxis(_log_softmax(x, axis), axis, -1)
    return -np.take_along_axis(lsm, y[..., None], -1)[..., 0]


# -- cross-entropy with labels --------------------------------------------------------------
@pytest.mark.parametrize("shape,axis", [((4, 5), -1), ((5, 4), 0), ((2, 3, 4), -1), ((2, 3, 4), 1), ((1, 7), 1)])
def test_cross_entropy_labels_value_and_gradient(shape, axis):
    x = rng.standard_normal(shape) * 3
    depth = shape[axis]
    y = rng.integers(0, depth, tuple(d for i, d in enumerate(shape) if i != axis % len(shape)))
    got = _run(lambda x, y: gc.cross_entropy(x, y, axis=axis, reduction="none"), x=x, y=y)
    np.testing.assert_allclose(got, _np_ce_labels(x, y, axis), rtol=1e-12)
    for reduction in ("mean", "sum", "none"):
        check_grad(lambda x, y, r=reduction: gc.cross_entropy(x, y, axis, r), {"x": x, "y": y}, wrt=["x"])


def test_cross_entropy_reductions_and_int32_labels():
    x, y = rng.standard_normal((6, 3)), np.array([0, 2, 1, 1, 0, 2], dtype=np.int32)
    per = _np_ce_labels(x, y)
    got = _run(lambda x, y: [gc.cross_entropy(x, y), gc.cross_entropy(x, y, reduction="sum")], x=x, y=y)
    np.testing.assert_allclose(got, [per.mean(), per.sum()], rtol=1e-12)


def test_cross_entropy_huge_logits_are_finite_in_value_and_gradient():
    x = np.array([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, 1000.0]], dtype=np.float32)
    y = np.array([1, 2])
    t = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    with gc.Graph() as g:
        xs = g.input("x", (2, 3))
        ys = g.input("y", (2,), "int64")
        ts = g.input("t", (2, 3))
        lab = gc.cross_entropy(xs, ys, reduction="none")
        prob = gc.cross_entropy(xs, ts, reduction="none")
        grads = gc.grad(gc.sum(lab) + gc.sum(prob), [xs, ts])
    lv, pv, gx, gt = gc.run(g, {"x": x, "y": y, "t": t}, outputs=[lab, prob, *grads])
    np.testing.assert_allclose(lv, [1000.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(pv, [500.0, 0.0], rtol=1e-6)
    assert np.isfinite(gx).all() and np.isfinite(gt).all()
    # (softmax - onehot) + (softmax * sum(t) - t), with softmax = [1, 0, 0]
    np.testing.assert_allclose(gx[0], [1.0 + 0.5, -1.0 - 0.5, 0.0], atol=1e-6)


def test_cross_entropy_gradient_is_the_fused_softmax_rule():
    with gc.Graph() as g:
        x = g.input("x", ("batch", 4), "float64")
        y = g.input("y", ("batch",), "int64")
        loss = gc.cross_entropy(x, y)
    gx = gc.grad(loss, x)
    ops = [n.op for n in g.live_nodes([gx]) if n.is_backward]
    assert "cross_entropy_labels_grad" in ops and "log" not in ops and "exp" not in ops
    for batch in (1, 5):
        xv, yv = rng.standard_normal((batch, 4)), rng.integers(0, 4, batch)
        sm = np.exp(_log_softmax(xv))
        np.testing.assert_allclose(gc.run(g, {"x": xv, "y": yv}, outputs=gx), (sm - np.eye(4)[yv]) / batch)


@pytest.mark.parametrize("shape,axis", [((4, 5), -1), ((5, 4), 0), ((2, 3, 4), 1)])
def test_cross_entropy_gradient_op_value_and_its_own_gradient(shape, axis):
    # cross_entropy_labels_grad(x, y, g) = (softmax(x) - onehot(y)) * g, differentiated in x and g
    x, w = rng.standard_normal(shape) * 2, None
    y = rng.integers(0, shape[axis], tuple(d for i, d in enumerate(shape) if i != axis % len(shape)))
    w = rng.standard_normal(y.shape)

    def grad_op(x, y, w):
        (gx,) = gc.grad(gc.sum(gc.cross_entropy(x, y, axis=axis, reduction="none") * w), [x])
        assert gx.op == "cross_entropy_labels_grad"
        return gx

    got = _run(grad_op, x=x, y=y, w=w)
    sm = np.exp(_log_softmax(x, axis))
    onehot = np.moveaxis(np.eye(shape[axis])[y], -1, axis)
    np.testing.assert_allclose(got, (sm - onehot) * np.expand_dims(w, axis), rtol=1e-12, atol=1e-15)
    check_grad(grad_op, {"x": x, "y": y, "w": w}, wrt=["x", "w"])


def test_cross_entropy_gradient_op_rejects_a_label_out_of_range():
    with gc.Graph() as g:
        x, y = g.input("x", (2, 3)), g.input("y", (2,), "int64")
        (gx,) = gc.grad(gc.cross_entropy(x, y), [x])
    with pytest.raises(IndexRangeError, match="label 3 at position \\(1,\\) is out of range"):
        gc.run(g, {"x": np.zeros((2, 3), np.float32), "y": np.array([0, 3])}, outputs=gx)


def test_cross_entropy_second_order():
    x, y = rng.standard_normal((3, 4)), np.array([3, 0, 1])
    check_second_order(lambda x, y: gc.cross_entropy(x * x, y), {"x": x, "y": y}, "x")
    t = rng.dirichlet(np.ones(4), 3)
    check_second_order(lambda x, t: gc.cross_entropy(x, t * t, reduction="sum"), {"x": x, "t": t}, "x")
    check_second_order(lambda x, t: gc.cross_entropy(x, t * t, reduction="sum"), {"x": x, "t": t}, "t")


@pytest.mark.parametrize("shape,axis", [((4, 5), -1), ((3, 4), 0), ((2, 3, 4), 1)])
def test_cross_entropy_probability_targets(shape, axis):
    x = rng.standard_normal(shape) * 2
    t = rng.uniform(0.0, 1.0, shape)  # not normalised: the sum(t) term of the gradient matters
    got = _run(lambda x, t: gc.cross_entropy(x, t, axis=axis, reduction="none"), x=x, t=t)
    np.testing.assert_allclose(got, -(t * _log_softmax(x, axis)).sum(axis), rtol=1e-12)
    check_grad(lambda x, t: gc.cross_entropy(x, t, axis=axis), {"x": x, "t": t})


def test_cross_entropy_labels_out_of_range_raise_at_run_time():
    with gc.Graph() as g:
        x = g.input("x", ("batch", 3), "float64")
        y = g.input("y", ("batch",), "int64")
        line = inspect.currentframe().f_lineno + 1
        loss = gc.cross_entropy(x, y)
    gx = gc.grad(loss, x)
    for bad, label in (([0, 3], 3), ([-1, 0], -1)):
        with pytest.raises(IndexRangeError, match=rf"cross_entropy: label {label} .*\[0, 3\).*test_losses.py:{line}"):
            gc.run(g, {"x": np.zeros((2, 3)), "y": np.array(bad)}, outputs=loss)
        with pytest.raises(IndexRangeError, match=rf"label {label} .*test_losses.py:{line}"):
            gc.run(g, {"x": np.zeros((2, 3)), "y": np.array(bad)}, outputs=gx)


# -- binary cross-entropy -------------------------------------------------------------------
def test_bce_with_logits_values_stable_and_scalar_template_agrees():
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 0.5, 30.0, 1000.0])
    t = np.array([1.0, 0.0, 0.3, 1.0, 0.0, 0.7, 0.0])
    got = _run(lambda x, t: gc.binary_cross_entropy_with_logits(x, t, reduction="none"), x=x, t=t)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[[0, 6]], [1000.0, 1000.0])
    np.testing.assert_allclose(got, np.logaddexp(0, x) - x * t, rtol=1e-12)  # log(1 + e^x) - x t
    mid = slice(2, 5)  # the textbook formula is exact enough only for moderate logits
    sig = 1 / (1 + np.exp(-x[mid]))
    np.testing.assert_allclose(got[mid], -(t[mid] * np.log(sig) + (1 - t[mid]) * np.log(1 - sig)), rtol=1e-12)
    template = get("bce_with_logits").scalar_expr({})
    for xi, ti, want in zip(x.tolist(), t.tolist(), got):
        assert math.isclose(eval(template.format(repr(xi), repr(ti)), {"math": math}), want, rel_tol=1e-12)


@pytest.mark.parametrize("tshape", [(3, 4), (4,), (), (3, 1)])
def test_bce_with_logits_gradients_with_broadcast_targets(tshape):
    x, t = rng.standard_normal((3, 4)) * 2, rng.uniform(0, 1, tshape)
    check_grad(lambda x, t: gc.binary_cross_entropy_with_logits(x, t, reduction="sum"), {"x": x, "t": t})


def test_bce_with_logits_int_targets_and_gradient_formula():
    x, t = rng.standard_normal(5), np.array([0, 1, 1, 0, 1])
    with gc.Graph() as g:
        xs, ts = g.input("x", (5,), "float64"), g.input("t", (5,), "int64")
        loss = gc.binary_cross_entropy_with_logits(xs, ts)
    gx = gc.grad(loss, xs)
    np.testing.assert_allclose(gc.run(g, {"x": x, "t": t}, outputs=gx), (1 / (1 + np.exp(-x)) - t) / 5)


def test_binary_cross_entropy_from_probabilities():
    p, t = rng.uniform(0.05, 0.95, (3, 4)), rng.uniform(0, 1, (3, 4))
    got = _run(lambda p, t: gc.binary_cross_entropy(p, t, reduction="none"), p=p, t=t)
    np.testing.assert_allclose(got, -(t * np.log(p) + (1 - t) * np.log(1 - p)), rtol=1e-12)
    check_grad(lambda p, t: gc.binary_cross_entropy(p, t), {"p": p, "t": t})
    edge = _run(lambda p, t: gc.binary_cross_entropy(p, t, reduction="none"), p=np.array([0.0, 1.0]), t=np.ones(2))
    assert np.isfinite(edge).all() and edge[0] > 10 and edge[1] < 1e-6


# -- mse and entropy ------------------------------------------------------------------------
@pytest.mark.parametrize("tshape", [(3, 4), (4,), ()])
def test_mse_values_and_gradients(tshape):
    p, t = rng.standard_normal((3, 4)), rng.standard_normal(tshape)
    got = _run(lambda p, t: [gc.mse(p, t), gc.mse(p, t, "sum"), gc.mse(p, t, "none")], p=p, t=t)
    d2 = (p - t) ** 2
    np.testing.assert_allclose(got[0], d2.mean())
    np.testing.assert_allclose(got[1], d2.sum())
    np.testing.assert_allclose(got[2], d2)
    check_grad(lambda p, t: gc.mse(p, t), {"p": p, "t": t})


def test_entropy_values_and_gradients_safe_at_zero():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    with gc.Graph() as g:
        ps = g.input("p", (3, 3), "float64")
        h = gc.entropy(ps)
        gp = gc.grad(gc.sum(h), ps)
        hh = gc.grad(gc.sum(gp * gp), ps)  # second order through the p = 0 branch
    hv, gv, hhv = gc.run(g, {"p": p}, outputs=[h, gp, hh])
    with np.errstate(divide="ignore", invalid="ignore"):
        want = -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)
    np.testing.assert_allclose(hv, want)
    np.testing.assert_allclose(hv[:2], [math.log(2), 0.0], atol=1e-15)
    assert np.isfinite(gv).all() and np.isfinite(hhv).all()
    np.testing.assert_allclose(gv[p > 0], -np.log(p[p > 0]) - 1)
    np.testing.assert_array_equal(gv[p == 0], 0.0)  # the convention 0 log 0 = 0 carries no gradient
    q = rng.dirichlet(np.ones(4), (2, 3))
    check_grad(lambda q: gc.entropy(q, axis=1), {"q": q})
    check_second_order(lambda q: gc.entropy(q * q), {"q": q}, "q")


# -- errors ---------------------------------------------------------------------------------
ERRORS = [
    (lambda x, y, t: gc.cross_entropy(x, y[:3]), gc.ShapeError,
     r"cross_entropy: labels i64\[3\] do not match logits f64\[4,10\]: labels need shape \[4\]"),
    (lambda x, y, t: gc.cross_entropy(x, y, axis=0), gc.ShapeError, r"labels i64\[4\] do not match.*need shape \[10\]"),
    (lambda x, y, t: gc.cross_entropy(x, t[:, :3]), gc.ShapeError,
     r"probability targets f64\[4,3\] must have the shape of logits f64\[4,10\]"),
    (lambda x, y, t: gc.cross_entropy(x, y, axis=2), gc.GraphcError, "axis 2 is out of range"),
    (lambda x, y, t: gc.cross_entropy(x, y, reduction="avg"), gc.GraphcError, "reduction must be one of mean, sum"),
    (lambda x, y, t: gc.cross_entropy(gc.cast(y, "int64"), y), gc.DTypeError, "logits must be a float node"),
    (lambda x, y, t: gc.cross_entropy(x, x > 0), gc.DTypeError, "target must be int labels or float probabilities"),
    (lambda x, y, t: gc.mse(x[:, :1], y), gc.ShapeError, r"mse: target i64\[4\] does not match f64\[4,1\]"),
    (lambda x, y, t: gc.mse(x, t[:, :3]), gc.ShapeError, r"mse: target f64\[4,3\] does not match f64\[4,10\]"),
    (lambda x, y, t: gc.binary_cross_entropy_with_logits(x[:, 0], t[0]), gc.ShapeError,
     r"binary_cross_entropy_with_logits: targets f64\[10\] does not match f64\[4\]"),
    (lambda x, y, t: gc.binary_cross_entropy(x, t, eps=2), gc.GraphcError, "eps must be a float"),
    (lambda x, y, t: gc.entropy(y), gc.DTypeError, "entropy: needs a float node"),
]  # fmt: skip


@pytest.mark.parametrize("build,exc,msg", ERRORS)
def test_declaration_errors_name_op_shapes_and_line(build, exc, msg):
    with gc.Graph() as g:
        x = g.input("x", (4, 10), "float64")
        y = g.input("y", (4,), "int64")
        t = g.input("t", (4, 10), "float64")
        with pytest.raises(exc, match=msg) as info:
            build(x, y, t)
    assert "test_losses.py:" in str(info.value)


def test_cross_entropy_gradient_op_checks_its_per_example_gradient():
    from graphc.errors import DTypeError, ShapeError
    from graphc.ops.registry import apply

    with gc.Graph() as g:
        x, y = g.input("x", (4, 5)), g.input("y", (4,), "int64")
        with pytest.raises(ShapeError, match=r"per-example gradient \[3\] must have the labels' \[4\]"):
            apply("cross_entropy_labels_grad", [x, y, gc.constant(np.zeros(3, np.float32))], {"axis": 1})
        with pytest.raises(DTypeError, match="must be float32 as the logits are, got float64"):
            apply("cross_entropy_labels_grad", [x, y, gc.constant(np.zeros(4), "float64")], {"axis": 1})
