"""Every op, forward and backward, on the CUDA backend matches the reference interpreter.

The op builders are the Numba backend's (tests/backends/test_numba_ops.py: ops with a scalar
template are built from the registry, the others by hand), so an op added there is tested here
too. Shapes are tiny: under the simulator every CUDA thread is a Python thread.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import UnsupportedOpError
from tests.backends.test_numba_ops import OPS, _builder

RTOL, ATOL = 2e-4, 2e-5
# ops the cuda backend refuses at compile time, naming the op (never a host fallback in a step)
NO_CUDA = {"allreduce": "collective"}


def _compare(build, seed=0):
    with gc.Graph("t") as g:
        y, feeds = build(g)
        outs = [y]
        floats = [g.inputs[k] for k in feeds if g.inputs[k].dtype == "float32"]
        if floats:
            c = gc.constant(np.random.default_rng(seed).standard_normal(y.shape).astype("float32")) if y.shape else 1.0
            outs += gc.grad(gc.sum(y * c), floats)
    ref = gc.compile(g, "reference", outputs=outs)(feeds)
    exe = gc.compile(g, "cuda", outputs=outs)
    got = exe(feeds)
    for o, r, v in zip(outs, ref, got):
        assert v.shape == r.shape and v.dtype == r.dtype, o
        np.testing.assert_allclose(v, r, rtol=RTOL, atol=ATOL, err_msg=f"{o} of {g.text(outs)}")
    return exe


@pytest.mark.parametrize("name", [n for n in OPS if n not in NO_CUDA])
def test_op_forward_and_backward_match_the_reference(name):
    build = _builder(name)
    assert build is not None, f"no test builder for op {name!r} (add one to tests/backends/test_numba_ops.py)"
    exe = _compare(build)
    assert exe.kernels  # it compiled to kernels, not the reference


@pytest.mark.parametrize("name", sorted(NO_CUDA))
def test_an_op_without_a_cuda_lowering_is_a_compile_time_error(name):
    with gc.Graph("t") as g:
        y, feeds = _builder(name)(g)
        g.output("y", y)
    with pytest.raises(UnsupportedOpError, match=rf"backend 'cuda': op '{name}' .* has no CUDA lowering"):
        gc.compile(g, "cuda")


def test_odd_sizes_broadcasts_and_reductions_over_several_blocks():
    # more elements than one launch covers (kernels stride), a reduction over a ragged row
    # longer than a block, another over the leading axis, a max with a NaN in it
    with gc.Graph("t") as g:
        x = g.input("x", (5, 37))
        b = g.input("b", (37,))
        y = gc.sigmoid(x * 1.5 + b) * gc.tanh(x)
        g.output("rows", gc.sum(y, 1))
        g.output("cols", gc.mean(y * y, 0))
        g.output("max", gc.max(x, 1))
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((5, 37)).astype(np.float32), "b": rng.standard_normal(37).astype(np.float32)}
    feeds["x"][2, 7] = np.nan
    got, want = gc.compile(g, "cuda")(feeds), gc.run(g, feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=RTOL, atol=ATOL, err_msg=k)
    assert np.isnan(got["max"][2]) and np.isnan(got["rows"][2])


def test_an_op_without_a_cuda_lowering_in_a_loop_body_is_found_at_compile_time():
    with gc.Graph("s") as g:
        xs, h0 = g.input("a", ("time", 2)), g.input("b", (2,))  # symbolic: nothing is specialised yet

        def cell(h, x):
            h = gc.allreduce(gc.tanh(x + h))
            return h, h

        h, _ = gc.scan(cell, h0, xs)
        g.output("h", h)
    with pytest.raises(UnsupportedOpError, match=r"op 'allreduce' \(allreduce#\d+: f32\[2\]\) has no CUDA lowering"):
        gc.compile(g, "cuda")


def test_a_scan_with_scalar_carries_reverse_and_a_random_op_in_its_body():
    def build(g):
        xs = g.input("a", (4, 3))

        def cell(c, x):  # a scalar carry, a vector y, a dropout mask drawn at each step
            y = gc.tanh(x * c) * gc.dropout_mask(x, 0.5, seed=1)
            return c * 0.5 + gc.sum(y), y

        c, ys = gc.scan(cell, gc.constant(np.float32(1.0)), xs, reverse=True)
        return gc.sum(ys, 0) + c, {"a": np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)}

    _compare(build)
