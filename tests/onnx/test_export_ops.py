"""Every op with an ONNX export rule: a small random graph of it, exported, passes onnx.checker's full
check and gives in onnxruntime what graphc's reference interpreter gives."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import graphc as gc
from graphc.onnx.export import OPSET, to_onnx
from graphc.ops.registry import all_ops

RNG = np.random.default_rng(0)


def _f(*shape):
    return RNG.standard_normal(shape).astype("float32")


def _unary(fn, positive=False):
    def build(g):
        x = g.input("x", ("batch", 3, 4))
        g.output("y", fn(x))
        v = _f(2, 3, 4)
        return {"x": np.abs(v) + 0.1 if positive else v}

    return build


def _binary(fn, positive=False):
    def build(g):
        a, b = g.input("a", ("batch", 3)), g.input("b", (3,))
        g.output("y", fn(a, b))
        va, vb = _f(4, 3), _f(3)
        return {"a": np.abs(va) + 0.5 if positive else va, "b": vb}

    return build


def _compare(fn):
    def build(g):
        a, b = g.input("a", (4, 3)), g.input("b", (4, 3))
        g.output("y", fn(a, b))
        va = _f(4, 3)
        vb = np.where(RNG.random((4, 3)) < 0.3, va, _f(4, 3))  # some ties
        return {"a": va, "b": vb}

    return build


def _where(g):
    c, a = g.input("c", (4, 3), "bool"), g.input("a", (4, 3))
    g.output("y", gc.where(c, a, -a))
    return {"c": RNG.random((4, 3)) < 0.5, "a": _f(4, 3)}


def _logical_not(g):
    c = g.input("c", (4, 3), "bool")
    g.output("y", gc.logical_not(c))
    return {"c": RNG.random((4, 3)) < 0.5}


def _cast(g):
    x = g.input("x", ("batch", 5))
    g.output("i", gc.cast(x * 3.0, "int32"))
    g.output("d", gc.cast(x, "float64"))
    return {"x": _f(3, 5)}


def _reduction(fn):
    def build(g):
        x = g.input("x", ("batch", 3, 4))
        g.output("all", fn(x))
        g.output("axis1", fn(x, 1))
        g.output("keep", fn(x, (0, 2), keepdims=True))
        return {"x": _f(2, 3, 4)}

    return build


def _sum_bool(g):
    x = g.input("x", (3, 4))
    g.output("count", gc.sum(x > 0, 1))
    g.output("sum", gc.sum(x, 0))
    return {"x": _f(3, 4)}


def _argmax(g):
    x = g.input("x", ("batch", 5))
    g.output("y", gc.argmax(x, -1))
    g.output("k", gc.argmax(x, 0, keepdims=True))
    return {"x": _f(4, 5)}


def _shape_size(g):
    x = g.input("x", ("batch", "n", 3))
    g.output("y", gc.shape_size(x, (0, 2)))
    return {"x": _f(4, 2, 3)}


def _softmax(fn):
    def build(g):
        x = g.input("x", ("batch", 5, 2))
        g.output("last", fn(x))
        g.output("mid", fn(x, 1))
        return {"x": _f(3, 5, 2) * 4}

    return build


def _reshape(g):
    x = g.input("x", ("batch", 2, 6))
    g.output("flat", gc.reshape(x, ("batch", 12)))
    g.output("split", gc.reshape(x, ("batch", 3, 2, 2)))
    g.output("moved", gc.reshape(x, (12, "batch")))  # the symbolic dim moves: its size is read at run time
    return {"x": _f(3, 2, 6)}


def _transpose(g):
    x = g.input("x", ("batch", 2, 3))
    g.output("y", gc.transpose(x, (2, 0, 1)))
    return {"x": _f(4, 2, 3)}


def _broadcast_to(g):
    x = g.input("x", ("batch", 1, 3))
    b = g.input("b", (3,))
    g.output("y", gc.broadcast_to(x, ("batch", 2, 3)))
    g.output("z", gc.broadcast_to(b, (4, 3)))
    return {"x": _f(5, 1, 3), "b": _f(3)}


def _full_like(g):
    x = g.input("x", ("batch", 3))
    g.output("y", gc.full_like(x, 2.5) + x)
    return {"x": _f(4, 3)}


def _matmul(g):
    x = g.input("x", ("batch", 3))
    w = g.param("w", (3, 4))
    a, b = g.input("a", (2, 3, 4)), g.input("b", (4, 5))
    g.output("y", x @ w)
    g.output("batched", a @ b)
    return {"x": _f(6, 3), "a": _f(2, 3, 4), "b": _f(4, 5)}


def _conv2d(g):
    x = g.input("x", ("batch", 4, 7, 6))
    w1, w2 = g.param("w1", (6, 4, 3, 3)), g.param("w2", (4, 2, 2, 3))
    g.output("same", gc.conv2d(x, w1, padding="same"))
    g.output("grouped", gc.conv2d(x, w2, stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2), groups=2))
    return {"x": _f(2, 4, 7, 6)}


def _conv2d_grad_input(g):
    """The transposed convolution (what ONNX's ConvTranspose imports as), strided: output_padding."""
    y = g.input("y", ("batch", 4, 3, 3))
    w1, w2 = g.param("w1", (4, 3, 3, 3)), g.param("w2", (4, 1, 2, 3))
    g.output("up", gc.conv2d_grad_input(y, w1, (6, 5), stride=2, padding=1))
    g.output(
        "grouped",
        gc.conv2d_grad_input(y, w2, (4, 6), stride=(1, 2), padding=((1, 0), (0, 2)), dilation=(2, 1), groups=2),
    )
    return {"y": _f(2, 4, 3, 3)}


def _max_pool2d(g):
    x = g.input("x", ("batch", 2, 7, 6))
    g.output("y", gc.max_pool2d(x, 2))
    g.output("padded", gc.max_pool2d(x, (3, 2), stride=(2, 1), padding=1))
    return {"x": _f(2, 2, 7, 6)}


def _avg_pool2d(g):
    x = g.input("x", ("batch", 2, 7, 6))
    g.output("y", gc.avg_pool2d(x, 2))
    g.output("incl", gc.avg_pool2d(x, 3, stride=2, padding=1))
    g.output("excl", gc.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False))
    return {"x": _f(2, 2, 7, 6)}


def _slice(g):
    x = g.input("x", ("batch", 6, 5))
    g.output("a", x[:, 1:5:2, ::-1])
    g.output("b", x[:, ::-2, 3:0:-1])
    g.output("c", x[:, 2, -2:])
    return {"x": _f(3, 6, 5)}


def _concat(g):
    a, b = g.input("a", ("batch", 2)), g.input("b", ("batch", 3))
    g.output("y", gc.concat([a, b, a], 1))
    return {"a": _f(4, 2), "b": _f(4, 3)}


def _split(g):
    x = g.input("x", ("batch", 7))
    p, q, r = gc.split(x, [2, 4, 1], axis=1)
    g.output("p", p)
    g.output("qr", q * 2.0)
    g.output("r", r)
    return {"x": _f(3, 7)}


def _take(g):
    x = g.input("x", (6, 4))
    i = g.input("i", ("batch", 2), "int64")
    g.output("rows", gc.take(x, i, 0))
    g.output("cols", gc.take(x, [3, -1, 0], 1))
    return {"x": _f(6, 4), "i": RNG.integers(-6, 6, (3, 2))}


def _one_hot(g):
    y = g.input("y", ("batch",), "int64")
    g.output("last", gc.one_hot(y, 5))
    g.output("first", gc.one_hot(y, 5, "float64", axis=0))
    return {"y": RNG.integers(0, 5, (4,))}


def _sequence_mask(g):
    n, x = g.input("n", ("batch",), "int32"), g.input("x", ("batch", "time", 2))
    g.output("fixed", gc.sequence_mask(n, 5, "float32"))
    g.output("masked", gc.where(gc.expand_dims(gc.sequence_mask(n, x.shape[1]), -1), x, 0.0))
    return {"n": np.asarray([0, 3, 5], "int32"), "x": _f(3, 5, 2)}


def _pad(g):
    x = g.input("x", ("batch", 3, 2))
    g.output("y", gc.pad(x, [(0, 0), (1, 2), (0, 1)], value=-1.5))
    return {"x": _f(2, 3, 2)}


def _cross_entropy_labels(g):
    x, y = g.input("x", ("batch", 5)), g.input("y", ("batch",), "int64")
    x3, y3 = g.input("x3", (2, 4, 3)), g.input("y3", (2, 3), "int32")
    g.output("per", gc.cross_entropy(x, y, reduction="none"))
    g.output("mean", gc.cross_entropy(x, y))
    g.output("axis1", gc.cross_entropy(x3, y3, axis=1, reduction="sum"))
    return {
        "x": _f(4, 5) * 3,
        "y": RNG.integers(0, 5, (4,)),
        "x3": _f(2, 4, 3),
        "y3": RNG.integers(0, 4, (2, 3)).astype("int32"),
    }


def _cross_entropy_labels_grad(g):
    x, y, w = g.input("x", ("batch", 5)), g.input("y", ("batch",), "int64"), g.input("w", ("batch",))
    x3, y3 = g.input("x3", (2, 4, 3)), g.input("y3", (2, 3), "int32")
    (gx,) = gc.grad(gc.sum(gc.cross_entropy(x, y, reduction="none") * w), [x])
    (gx3,) = gc.grad(gc.cross_entropy(x3, y3, axis=1), [x3])
    assert gx.op == gx3.op == "cross_entropy_labels_grad"
    g.output("gx", gx)
    g.output("gx3", gx3)
    return {
        "x": _f(4, 5) * 3,
        "y": RNG.integers(0, 5, (4,)),
        "w": _f(4),
        "x3": _f(2, 4, 3),
        "y3": RNG.integers(0, 4, (2, 3)).astype("int32"),
    }


def _cross_entropy_probs(g):
    x, t = g.input("x", ("batch", 5)), g.input("t", ("batch", 5))
    g.output("per", gc.cross_entropy(x, t, reduction="none"))
    p = np.abs(_f(4, 5))
    p[0, :2] = 0
    return {"x": _f(4, 5), "t": p / p.sum(1, keepdims=True)}


def _bce(g):
    x, t = g.input("x", ("batch", 3)), g.input("t", ("batch", 3))
    g.output("per", gc.binary_cross_entropy_with_logits(x, t, reduction="none"))
    return {"x": _f(4, 3) * 5, "t": RNG.random((4, 3)).astype("float32")}


def _scan(g):
    xs = g.input("xs", (5, "batch", 3))
    h0 = g.input("h0", ("batch", 4))
    w, u = g.param("w", (3, 4)), g.param("u", (4, 4))

    def cell(h, x):
        h = gc.tanh(x @ w + h @ u)
        return h, h * 2.0

    h, ys = gc.scan(cell, h0, xs)
    hr, ysr = gc.scan(cell, h0, xs, reverse=True)
    g.output("h", h)
    g.output("ys", ys)
    g.output("hr", hr)
    g.output("ysr", ysr)
    return {"xs": _f(5, 2, 3), "h0": _f(2, 4)}


def _scan_pair(g):
    """A tuple carry (an LSTM-like pair), two xs, and the residuals (stacked carries entering each step)."""
    xs, ms = g.input("xs", (4, 2, 3)), g.input("ms", (4, 2, 1))
    c0 = g.input("c0", (2, 3))

    def cell(carry, x):
        a, b = carry
        x_t, m_t = x
        a2 = a * 0.5 + x_t * m_t
        return (a2, gc.maximum(b, a2)), gc.sum(a2, 1)

    (a, b), ys = gc.scan(cell, (c0, c0 * 0.0), (xs, ms))
    g.output("a", a)
    g.output("b", b)
    g.output("ys", ys)
    scan_node = a.inputs[0]
    g.output("res", gc.tuple_get(scan_node, 4))  # carry 0 entering each step
    return {"xs": _f(4, 2, 3), "ms": _f(4, 2, 1), "c0": _f(2, 3)}


def _scan_without_xs(g):
    """length= only (ONNX Loop), forward and reverse (Loop stacks by iteration: flipped)."""
    h0 = g.input("h0", ("batch", 3))
    w = g.param("w", (3, 3))

    def cell(h, _):
        h = gc.tanh(h @ w) + 1.0
        return h, gc.sum(h, 1)

    h, ys = gc.scan(cell, h0, length=4)
    hr, ysr = gc.scan(cell, h0, length=3, reverse=True)
    g.output("h", h)
    g.output("ys", ys)
    g.output("hr", hr)
    g.output("ysr", ysr * gc.reshape(gc.constant(np.arange(3.0, dtype="float32")), (3, 1)))
    return {"h0": _f(2, 3)}


def _scan_nested(g):
    """A scan in a scan's body: the inner body reads the outer graph's weight through both."""
    xs = g.input("xs", (3, "batch", 4, 2))
    w = g.param("w", (2, 2))

    def inner(c, x):
        c = gc.tanh(c @ w + x)
        return c, c * 2.0

    def outer(c, x):
        c, ys = gc.scan(inner, c, gc.transpose(x, (1, 0, 2)))
        return c, gc.sum(ys, 0)

    c, ys = gc.scan(outer, gc.zeros_like(xs[0, :, 0, :]), xs)
    g.output("c", c)
    g.output("ys", ys)
    return {"xs": _f(3, 2, 4, 2)}


CASES = {
    "add": _binary(gc.add),
    "sub": _binary(gc.sub),
    "mul": _binary(gc.mul),
    "div": _binary(gc.div),
    "pow": _binary(gc.pow, positive=True),
    "neg": _unary(gc.neg),
    "exp": _unary(gc.exp),
    "log": _unary(gc.log, positive=True),
    "sqrt": _unary(gc.sqrt, positive=True),
    "abs": _unary(gc.abs),
    "sign": _unary(lambda x: gc.sign(gc.where(x > 0.5, 0.0, x))),
    "erf": _unary(gc.erf),
    "sin": _unary(gc.sin),
    "cos": _unary(gc.cos),
    "maximum": _binary(gc.maximum),
    "minimum": _binary(gc.minimum),
    "where": _where,
    "less": _compare(gc.less),
    "less_equal": _compare(gc.less_equal),
    "greater": _compare(gc.greater),
    "greater_equal": _compare(gc.greater_equal),
    "equal": _compare(gc.equal),
    "not_equal": _compare(gc.not_equal),
    "logical_not": _logical_not,
    "cast": _cast,
    "relu": _unary(gc.relu),
    "leaky_relu": _unary(lambda x: gc.leaky_relu(x, 0.2)),
    "sigmoid": _unary(gc.sigmoid),
    "tanh": _unary(gc.tanh),
    "softplus": _unary(lambda x: gc.softplus(x * 10.0)),
    "gelu": _unary(gc.gelu),
    "softmax": _softmax(gc.softmax),
    "log_softmax": _softmax(gc.log_softmax),
    "sum": _sum_bool,
    "mean": _reduction(gc.mean),
    "max": _reduction(gc.max),
    "argmax": _argmax,
    "shape_size": _shape_size,
    "reshape": _reshape,
    "transpose": _transpose,
    "broadcast_to": _broadcast_to,
    "full_like": _full_like,
    "matmul": _matmul,
    "conv2d": _conv2d,
    "conv2d_grad_input": _conv2d_grad_input,
    "max_pool2d": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "slice": _slice,
    "concat": _concat,
    "split": _split,
    "take": _take,
    "one_hot": _one_hot,
    "pad": _pad,
    "sequence_mask": _sequence_mask,
    "cross_entropy_labels": _cross_entropy_labels,
    "cross_entropy_labels_grad": _cross_entropy_labels_grad,
    "cross_entropy_probs": _cross_entropy_probs,
    "bce_with_logits": _bce,
    "tuple_get": _scan_pair,
    "scan": _scan,
    "scan (tuple carry, residuals)": _scan_pair,
    "scan (no xs: Loop)": _scan_without_xs,
    "scan (nested)": _scan_nested,
}


def exported_ops() -> set:
    return {name for name, op in all_ops().items() if "onnx" in op.lowerings}


def test_every_op_with_an_export_rule_has_a_case():
    cases = {name.split(" ")[0] for name in CASES}
    assert exported_ops() == cases, exported_ops() ^ cases


def _agree(g, feeds):
    model = to_onnx(g)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET and model.ir_version == 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    want = gc.run(g, feeds)
    assert set(got) == set(want)
    for name, w in want.items():
        assert got[name].dtype == w.dtype, name
        assert got[name].shape == w.shape, name
        np.testing.assert_allclose(got[name], w, rtol=2e-5, atol=2e-6, err_msg=name)
    return model


@pytest.mark.parametrize("case", list(CASES))
def test_op_agrees_with_onnxruntime(case):
    g = gc.Graph(case.split(" ")[0])
    with g:
        feeds = CASES[case](g)
    model = _agree(g, feeds)
    if case != "tuple_get":
        op = case.split(" ")[0]
        ops = {n.op for n in g.live_nodes()} | {n.op for n in g.nodes}
        assert op in ops  # the case really holds the op it tests
    assert model.graph.input  # inputs carry shapes, symbolic dims as dim_param
