"""graphc.backends.scan_rows: which scan bodies keep the rows of their batch apart (each op's
row rule, graphc.ops.rows), which outputs sum them, and the body rebuilt over fewer rows."""

import numpy as np
import pytest

import graphc as gc
from graphc.backends.scan_rows import NotRowwise, batch_rows, body_over

B, H = 8, 3


def body_of(cell, carry_shape=(B, H), x_shape=(B, 2), captured=None):
    """The body of gc.scan(cell, zeros carry, xs) traced in a fresh graph (with `captured` inputs)."""
    g = gc.Graph("rows")
    with g:
        xs = g.input("xs", (5, *x_shape), "float64")
        caps = {k: g.input(k, s, "float64") for k, s in (captured or {}).items()}
        init = gc.constant(np.zeros(carry_shape), "float64")
        out = gc.scan(lambda h, x: cell(h, x, **caps), init, xs)
    scan = out[0].inputs[0] if out[0].op == "tuple_get" else out[0]
    return scan.attrs["body"], scan.attrs["num_carry"]


def test_an_rnn_step_keeps_its_rows_apart_and_rebuilds_over_fewer():
    def cell(h, x, w, u, b):
        h = gc.tanh(x @ w + h @ u + b)
        return h, h * 2.0

    body, nc = body_of(cell, captured={"w": (2, H), "u": (H, H), "b": (H,)})
    rows = batch_rows(body, nc)
    assert rows.size == B and rows.summed == frozenset()
    half = body_over(body, B // 2)
    assert [n.shape for n in half.inputs] == [(B // 2, H), (B // 2, 2)]
    assert [n.shape for n in half.captured] == [(2, H), (H, H), (H,)]
    assert [n.shape for n in half.outputs] == [(B // 2, H)] * 2
    assert batch_rows(half, nc).size == B // 2


def test_a_per_step_sum_over_the_batch_is_a_summed_output_not_a_carry():
    def summed(h, x):
        h = gc.tanh(h + x[:, :1])
        return h, gc.sum(h, axis=0)

    body, nc = body_of(summed)
    assert batch_rows(body, nc).summed == frozenset({1})

    def carried(h, x):  # the carry itself reads the sum: rows are mixed
        return h - gc.mean(h, axis=0), None

    body, nc = body_of(carried)
    with pytest.raises(NotRowwise, match="mean: reduces over the batch axis"):
        batch_rows(body, nc)


@pytest.mark.parametrize(
    "cell,captured,match",
    [
        (lambda h, x: (h @ gc.transpose(h) @ h, None), None, "matmul: batch axes"),  # rows meet rows
        (lambda h, x, m: (h * m, None), {"m": (B, H)}, "spans the batch axis"),  # a per-row captured value
        (lambda h, x: (h + gc.sum(h, axis=0), None), None, "reads a sum over the batch"),
        (lambda h, x: (gc.reshape(h, (H, B)).T, None), None, "states no row rule"),
        (lambda h, x: (gc.concat([h[B // 2 :], h[: B // 2]], axis=0), None), None, "slices the batch axis 0"),
    ],
)
def test_bodies_that_mix_rows_are_refused_with_the_reason(cell, captured, match):
    body, nc = body_of(cell, captured=captured)
    with pytest.raises(NotRowwise, match=match):
        batch_rows(body, nc)


def test_a_scalar_carry_has_no_batch():
    g = gc.Graph("scalar")
    with g:
        xs = g.input("xs", (5, B), "float64")
        total, _ = gc.scan(lambda s, x: (s + gc.sum(x), None), gc.constant(0.0, "float64"), xs)
    body = total.inputs[0].attrs["body"] if total.op == "tuple_get" else total.attrs["body"]
    with pytest.raises(NotRowwise, match="leading batch axis"):
        batch_rows(body, 1)
