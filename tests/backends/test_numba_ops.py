"""Every op, forward and backward, compiled with Numba matches the reference interpreter.

Ops with a scalar template are built automatically from the registry (so new elementwise ops
are covered without editing this file); the others have a builder below. Ops with neither
are reported as skipped, by name.
"""

import re

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import Kind, all_ops, apply

pytest.importorskip("numba")

RTOL, ATOL = 2e-4, 2e-5
rng = np.random.default_rng(0)


def _signed(shape, dtype="float32"):
    return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(dtype)


def _pos(shape, dtype="float32"):
    return rng.uniform(0.5, 2.0, shape).astype(dtype)


# op name -> (build(g) -> value node, feeds); nodes are built from graph inputs named a, b, ...
def _img(g, c=3, hw=7, name="a"):
    return g.input(name, (2, c, hw, hw)), {name: _signed((2, c, hw, hw))}


def _b_conv(g):
    x, f = _img(g)
    w = g.input("b", (4, 3, 3, 3))
    return gc.conv2d(x, w, stride=2, padding=1), {**f, "b": _signed((4, 3, 3, 3))}


def _b_pool(fn):
    def build(g):
        x, f = _img(g)
        return fn(x, 2), f

    return build


def _b_labels_ce(g):
    x = g.input("a", (5, 7))
    y = g.input("labels", (5,), "int64")
    return gc.cross_entropy(x, y, reduction="none"), {"a": _signed((5, 7)), "labels": rng.integers(0, 7, 5)}


def _b_labels_ce_grad(g):
    # cross_entropy's gradient op, with a per-example weight (its gradient input g) and the class
    # axis inside; _compare then differentiates it again (the op's own gradient rule)
    x = g.input("a", (3, 7, 2))
    y = g.input("labels", (3, 2), "int64")
    w = g.input("b", (3, 2))
    (gx,) = gc.grad(gc.sum(gc.cross_entropy(x, y, axis=1, reduction="none") * w), [x])
    assert gx.op == "cross_entropy_labels_grad"
    return gx, {"a": _signed((3, 7, 2)), "labels": rng.integers(0, 7, (3, 2)), "b": _signed((3, 2))}


def _b_probs_ce(g):
    x = g.input("a", (5, 7))
    t = g.input("b", (5, 7))
    p = rng.uniform(0, 1, (5, 7)).astype("float32")
    return gc.cross_entropy(x, t, reduction="none"), {"a": _signed((5, 7)), "b": p / p.sum(1, keepdims=True)}


def _unary(shape, f, pos=False):
    def build(g):
        x = g.input("a", shape)
        return f(x), {"a": (_pos if pos else _signed)(shape)}

    return build


def _take(g):
    x = g.input("a", (6, 5))
    i = g.input("idx", (4,), "int64")
    return gc.take(x, i, axis=0), {"a": _signed((6, 5)), "idx": np.array([0, 5, 2, 2])}


def _one_hot(g):
    i = g.input("idx", (4,), "int64")
    return gc.one_hot(i, 5) * 1.5, {"idx": np.array([0, 4, 2, 2])}


def _shape_size(g):
    x = g.input("a", ("batch", 3))
    return gc.mean(x, 0), {"a": _signed((5, 3))}


def _full_like(g):
    x = g.input("a", ("batch", 3))
    return gc.sum(gc.full_like(x, 2.5) * x + gc.zeros_like(x), 0), {"a": _signed((5, 3))}


def _split(g):
    # a tuple node read by its projections, one of them twice, and a part of another size
    x = g.input("a", (4, 6))
    a, b, c = gc.split(gc.tanh(x) * 2.0, [2, 2, 2], axis=1)
    d, e = gc.split(x, [1, 5], axis=1)
    return gc.concat([a * b + a, c, d * 3.0 + e[:, :1]], 1), {"a": _signed((4, 6))}


def _scan(g):
    xs, h0 = g.input("a", (5, 2, 3)), g.input("b", (2, 3))

    def cell(h, x_t):
        h = gc.tanh(x_t * 0.5 + h * 0.9)
        return h, h * 2.0

    h, hs = gc.scan(cell, h0, xs)
    return gc.concat([h, gc.sum(hs, 0)], 1), {"a": _signed((5, 2, 3)), "b": _signed((2, 3))}


BUILDERS = {
    "full_like": _full_like,
    "cast": _unary((3, 5), lambda x: gc.cast(gc.cast(x * 3.0, "int32"), "float32") + gc.cast(x > 0, "float32")),
    "leaky_relu": _unary((3, 5), lambda x: gc.leaky_relu(x, 0.2)),
    "softmax": _unary((3, 5), lambda x: gc.softmax(x, 0)),
    "log_softmax": _unary((4, 3, 5), lambda x: gc.log_softmax(x, 1)),
    "sum": _unary((4, 3, 5), lambda x: gc.sum(x * x, (0, 2))),
    "mean": _unary((4, 3, 5), lambda x: gc.mean(gc.exp(x), 1, keepdims=True)),
    "max": _unary((4, 3, 5), lambda x: gc.max(x, -1)),
    "argmax": _unary((4, 5), lambda x: gc.cast(gc.argmax(x, 1), "float32") * gc.sum(x, 1)),
    "shape_size": _shape_size,
    "reshape": _unary((4, 6), lambda x: gc.reshape(gc.tanh(x), (2, 12)) * 2.0),
    "transpose": _unary((4, 3, 5), lambda x: gc.transpose(x, (2, 0, 1)) + 1.0),
    "broadcast_to": _unary((3, 1), lambda x: gc.broadcast_to(x, (2, 3, 4)) * 3.0),
    "matmul": lambda g: (
        g.input("a", (2, 3, 4)) @ g.input("b", (4, 5)),
        {"a": _signed((2, 3, 4)), "b": _signed((4, 5))},
    ),
    "conv2d": _b_conv,
    "conv2d_grad_input": _b_conv,
    "conv2d_grad_weight": _b_conv,
    "max_pool2d": _b_pool(gc.max_pool2d),
    "max_pool2d_grad": _b_pool(gc.max_pool2d),
    "max_pool2d_gather": _b_pool(gc.max_pool2d),
    "avg_pool2d": _b_pool(gc.avg_pool2d),
    "avg_pool2d_grad": _b_pool(gc.avg_pool2d),
    "slice": _unary((6, 5), lambda x: x[1:5:2, ::-1] * 2.0),
    "slice_grad": _unary((6, 5), lambda x: x[1:4] * 2.0),
    "concat": _unary((3, 5), lambda x: gc.concat([x, gc.exp(x)], 1)),
    "take": _take,
    "take_grad": _take,
    "one_hot": _one_hot,
    "sequence_mask": lambda g: (
        gc.cast(gc.sequence_mask(g.input("n", (4,), "int32"), 5), "float32") * 1.5,
        {"n": np.array([0, 5, 2, 3], np.int32)},
    ),
    "pad": _unary((3, 5), lambda x: gc.pad(x, ((1, 0), (2, 1))) * 2.0),
    "cross_entropy_labels": _b_labels_ce,
    "cross_entropy_labels_grad": _b_labels_ce_grad,
    "cross_entropy_probs": _b_probs_ce,
    "dropout_mask": _unary((30, 20), lambda x: gc.dropout(x, 0.5, seed=3)),
    "log": _unary((3, 5), gc.log, pos=True),
    "sqrt": _unary((3, 5), gc.sqrt, pos=True),
    "pow": lambda g: (g.input("a", (2, 3, 5)) ** g.input("b", (3, 1)), {"a": _pos((2, 3, 5)), "b": _signed((3, 1))}),
    "split": _split,
    "scan": _scan,
    "tuple_get": _split,
    "allreduce": _unary((3, 5), lambda x: gc.allreduce(gc.tanh(x)) * 2.0),  # one process: the identity
}


def _auto(opdef):
    """A builder for an op with a plain scalar template: broadcasting inputs of matching dtypes."""
    tmpl = opdef.scalar
    if not isinstance(tmpl, str):
        return None
    arity = len(set(re.findall(r"\{(\d+)\}", tmpl)))
    shapes = [(2, 3, 5), (3, 1), (5,)][:arity] if opdef.kind is Kind.BROADCAST else [(3, 5)] * arity
    if opdef.name == "where":
        shapes = [(3, 5), (2, 3, 5), (5,)]

    def build(g):
        xs, feeds = [], {}
        for i, s in enumerate(shapes):
            name = "abc"[i]
            boolean = opdef.name == "logical_not" or (opdef.name == "where" and i == 0)
            xs.append(g.input(name, s, "bool" if boolean else "float32"))
            feeds[name] = rng.random(s) > 0.5 if boolean else _signed(s)
        y = apply(opdef.name, xs)
        return (gc.cast(y, "float32") if y.dtype == "bool" else y), feeds

    return build


def _builder(name):
    if name in BUILDERS:
        return BUILDERS[name]
    od = all_ops()[name]
    return _auto(od) if od.kind in (Kind.ELEMENTWISE, Kind.BROADCAST) else None


# graphc's own ops: test modules register ops of their own (tests/ir/test_subgraph.py), which a
# worker that imported them first would otherwise count here.
OPS = sorted(
    n for n, od in all_ops().items() if od.kind is not Kind.SOURCE and od.infer.__module__.startswith("graphc.")
)


def _compare(build, with_grads=True):
    with gc.Graph("t") as g:
        y, feeds = build(g)
        outs = [y]
        floats = [g.inputs[k] for k in feeds if g.inputs[k].dtype == "float32"]
        if with_grads and floats:
            c = gc.constant(rng.standard_normal(y.shape).astype("float32")) if y.shape else 1.0
            loss = gc.sum(y * c)
            outs += gc.grad(loss, floats)
    ref = gc.compile(g, "reference", outputs=outs)(feeds)
    got = gc.compile(g, "numba", outputs=outs)(feeds)
    for o, r, v in zip(outs, ref, got):
        assert v.shape == r.shape and v.dtype == r.dtype, o
        np.testing.assert_allclose(v, r, rtol=RTOL, atol=ATOL, err_msg=f"{o} of {g.text(outs)}")
    return g, outs


@pytest.mark.parametrize("name", OPS)
def test_op_matches_reference(name):
    build = _builder(name)
    if build is None:
        pytest.skip(f"no builder for op {name!r}: add one to BUILDERS")
    _compare(build)


def test_every_op_has_a_builder():
    missing = [n for n in OPS if _builder(n) is None]
    assert not missing, f"ops without a numba test builder: {missing}"


def test_odd_sizes_and_large_parallel_loops():
    # a loop large enough for prange, with a ragged size and a broadcast row
    def build(g):
        x = g.input("a", (1031, 1025))
        b = g.input("b", (1025,))
        return gc.sigmoid(x * 1.5 + b) * gc.tanh(x) + 0.5 * x, {"a": _signed((1031, 1025)) * 40, "b": _signed((1025,))}

    _compare(build, with_grads=False)


def test_special_values_in_vector_math():
    with gc.Graph() as g:
        x = g.input("x", (9,))
        g.output("e", gc.exp(x))
        g.output("t", gc.tanh(x))
        g.output("s", gc.sigmoid(x))
    v = np.array([-np.inf, -200, -88, -1e-9, 0, 3e-5, 88.7, 200, np.inf], np.float32)
    ref = gc.run(g, {"x": v})
    got = gc.compile(g, "numba")(x=v)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=3e-6, atol=1e-37)
    nan = gc.compile(g, "numba")(x=np.full(9, np.nan, np.float32))
    assert all(np.isnan(a).all() for a in nan.values())


def test_a_permuted_stack_of_rows_by_a_matrix_is_one_product_over_a_c_ordered_copy(monkeypatch):
    # the time-major view of a batch-first input times a weight (an RNN's input projection)
    from graphc.backends.numba import lowerings

    copied = []
    real = lowerings._scratch
    monkeypatch.setattr(lowerings, "_scratch", lambda shape, dtype: (copied.append(shape), real(shape, dtype))[1])
    g = gc.Graph("rows")
    with g:
        x = g.input("x", (4, 6, 5), "float64")
        w = g.input("w", (5, 7), "float64")
        g.output("y", gc.transpose(x, (1, 0, 2)) @ w + 1.0)
    exe = gc.compile(g, "numba")
    ref = gc.compile(g, "reference")
    rng = np.random.default_rng(0)
    for _ in range(2):  # the scratch copy is refreshed at every call
        f = {"x": rng.standard_normal((4, 6, 5)), "w": rng.standard_normal((5, 7))}
        np.testing.assert_allclose(exe(f)["y"], ref(f)["y"], rtol=1e-12)
        np.testing.assert_allclose(exe(f)["y"], np.einsum("btk,kn->tbn", f["x"], f["w"]) + 1.0, rtol=1e-12)
    assert copied and set(copied) == {(6, 4, 5)}  # the permuted view went through the C-ordered copy
