"""A weight gradient's product and its in-place update in one gemm (numba/accumulate.py): which
epilogues are taken, the values against the reference interpreter, and the fallback."""

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("numba")

from graphc.backends.numba import accumulate  # noqa: E402

B, D, H = 16, 12, 8


def _train(update, dtype="float32"):
    """A linear layer's training step: the update of w given as update(w, grad of w)."""
    rng = np.random.default_rng(0)
    w0 = (rng.standard_normal((D, H)) * 0.3).astype(dtype)
    with gc.Graph("acc") as g:
        x = g.input("x", (B, D), dtype)
        w = g.param("w", (D, H), dtype=dtype, init=w0)
        loss = g.output("loss", gc.sum(gc.tanh(x @ w) ** 2))
        update(g, w, gc.gradients(loss)["w"])
    return g, loss


def _sgd(g, w, grad):
    g.update("w", w - 0.05 * grad)


def _relu_step(g, w, grad):  # not affine in the product
    g.update("w", w - 0.05 * gc.relu(grad))


def _scaled_product(g, w, grad):  # w * grad: not alpha * grad + beta * w
    g.update("w", w * grad)


def _steps(exe):
    (rt,) = exe.runtimes.values()
    return rt.steps


def _feed(seed, dtype="float32"):
    return {"x": np.random.default_rng(seed).standard_normal((B, D)).astype(dtype)}


@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_an_sgd_update_is_one_gemm_into_the_weight_and_matches_the_reference(dtype, rtol):
    g, loss = _train(_sgd, dtype)
    exe = gc.compile(g, "numba", outputs=[loss], apply_updates=True)
    g2, loss2 = _train(_sgd, dtype)
    ref = gc.compile(g2, "reference", outputs=[loss2], apply_updates=True)
    for seed in range(4):
        np.testing.assert_allclose(exe(_feed(seed, dtype))[0], ref(_feed(seed, dtype))[0], rtol=rtol)
        np.testing.assert_allclose(g.values["w"], g2.values["w"], rtol=rtol, atol=rtol / 10)
    (acc,) = [st for st in _steps(exe) if isinstance(st, accumulate.AccumulateCall)]
    assert acc.beta == 1.0 and acc.alpha == pytest.approx(-0.05)


def test_a_momentum_step_whose_epilogue_writes_two_updates_keeps_its_kernel():
    def momentum(g, w, grad):
        v = g.param("v", (D, H), dtype="float64", init=np.zeros((D, H)), trainable=False)
        v_new = 0.9 * v + grad
        g.update("v", v_new)
        g.update("w", w - 0.05 * v_new)

    g, loss = _train(momentum, "float64")
    g2, loss2 = _train(momentum, "float64")
    exe = gc.compile(g, "numba", outputs=[loss], apply_updates=True)
    ref = gc.compile(g2, "reference", outputs=[loss2], apply_updates=True)
    for seed in range(4):
        np.testing.assert_allclose(exe(_feed(seed, "float64"))[0], ref(_feed(seed, "float64"))[0], rtol=1e-10)
    for name in ("v", "w"):
        np.testing.assert_allclose(g.values[name], g2.values[name], rtol=1e-10, atol=1e-12)
    # v's new value is read by w's update in the same epilogue: two outputs, not one gemm's
    assert not any(isinstance(st, accumulate.AccumulateCall) for st in _steps(exe))


@pytest.mark.parametrize("update", [_relu_step, _scaled_product])
def test_an_epilogue_that_is_not_affine_in_the_product_keeps_its_kernel(update):
    g, loss = _train(update, "float64")
    g2, loss2 = _train(update, "float64")
    exe = gc.compile(g, "numba", outputs=[loss], apply_updates=True)
    ref = gc.compile(g2, "reference", outputs=[loss2], apply_updates=True)
    for seed in range(3):
        exe(_feed(seed, "float64"))
        ref(_feed(seed, "float64"))
        np.testing.assert_allclose(g.values["w"], g2.values["w"], rtol=1e-10, atol=1e-12)
    assert not any(isinstance(st, accumulate.AccumulateCall) for st in _steps(exe))


def test_gemm_takes_transposed_and_strided_operands_and_refuses_what_blas_cannot_take():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((7, 5)).astype(np.float32)
    big = rng.standard_normal((5, 12)).astype(np.float32)
    for left, right in [(a, big[:, :9]), (np.asfortranarray(a), big[:, 2:11]), (a.T.copy().T, big.T.copy().T[:, :9])]:
        out = rng.standard_normal((7, 9)).astype(np.float32)
        want = -0.5 * (left.astype(np.float64) @ right) + 2.0 * out
        assert accumulate.gemm(out, left, right, -0.5, 2.0)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    out = np.zeros((7, 9), np.float32)
    assert not accumulate.gemm(out, a[:, :0], big[:0, :9], 1.0, 1.0)  # an empty product
    assert not accumulate.gemm(out, a, big[:, :8], 1.0, 1.0)  # shapes that do not fit out
    strided = rng.standard_normal((5, 18)).astype(np.float32)[:, ::2]  # no unit stride: no BLAS layout
    assert not accumulate.gemm(out, a, strided, 1.0, 1.0)
    assert not accumulate.gemm(out, a.astype(np.float64), big[:, :9], 1.0, 1.0)  # mixed dtypes
    assert not accumulate.gemm(out, a, out[:5], 1.0, 1.0)  # out overlaps an operand
    assert not np.any(out)  # nothing was written by a refusal


def _biased(shape_x, dtype, scale=1.0):
    """y = scale * (x @ w) + b, b a row."""
    rng = np.random.default_rng(5)
    with gc.Graph("bias") as g:
        x = g.input("x", shape_x, dtype)
        w = g.param("w", (D, H), dtype=dtype, init=(rng.standard_normal((D, H)) * 0.3).astype(dtype))
        b = g.param("b", (H,), dtype=dtype, init=rng.standard_normal(H).astype(dtype))
        y = g.output("y", scale * (x @ w) + b)
    return g, y


@pytest.mark.parametrize("shape_x", [(B, D), (5, B, D)])
@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_a_bias_row_is_filled_into_the_product_and_gemm_adds_to_it(shape_x, dtype, rtol):
    """x @ w + b: the output starts as b broadcast over the rows, then one gemm with beta = 1
    (a stack of rows by one matrix too: the x-projection of a recurrent layer)."""
    g, y = _biased(shape_x, dtype, 0.5)
    exe = gc.compile(g, "numba", outputs=[y])
    ref = gc.compile(g, "reference", outputs=[y])
    (acc,) = [st for st in _steps(exe) if isinstance(st, accumulate.AccumulateCall)]
    assert acc.fill and acc.alpha == pytest.approx(0.5) and acc.beta == 1.0
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal(shape_x).astype(dtype)
        np.testing.assert_allclose(exe(x=x)[0], ref(x=x)[0], rtol=rtol, atol=rtol)


def test_a_bias_filled_product_on_graphcs_own_threads_fills_each_block_on_its_core():
    from graphc.backends.numba import blas, team

    rng = np.random.default_rng(6)
    a, w = rng.standard_normal((600, 40)).astype(np.float32), rng.standard_normal((40, 300)).astype(np.float32)
    row = rng.standard_normal(300).astype(np.float32)
    out = np.full((600, 300), np.nan, np.float32)
    saved = blas.own_threads, blas.large
    blas.own_threads, blas.large = True, 2
    try:
        before = team.STATS["tasks"]
        assert accumulate.gemm(out, a, w, 2.0, 1.0, row)
        ran_on_team = team.STATS["tasks"] > before
    finally:
        blas.own_threads, blas.large = saved
        blas.restore()
    np.testing.assert_allclose(out, 2.0 * (a @ w) + row, rtol=1e-5, atol=1e-4)
    assert ran_on_team or team.team() is None
    assert not accumulate.gemm(out, a, w, 1.0, 1.0, row[:-1])  # a row of the wrong length: not taken


def test_a_gemm_site_reuses_its_prepared_call_only_for_the_same_arrays(monkeypatch):
    """GemmSite keeps the call it prepared (checks, layouts, addresses) while the arrays, scales
    and thread count are the same objects and values; any change prepares again."""
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((9, 6)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    row = rng.standard_normal(5).astype(np.float32)
    made = []
    real = accumulate.prepare
    monkeypatch.setattr(accumulate, "prepare", lambda *args: made.append(args) or real(*args))
    site = accumulate.GemmSite()
    out = np.zeros((9, 5), np.float32)
    for _ in range(3):
        assert site(out, a, b, 1.0, 1.0, row)
    np.testing.assert_allclose(out, a @ b + row, rtol=1e-5, atol=1e-5)
    assert len(made) == 1  # prepared once, reused twice
    a2 = a * 2  # a new operand: prepared again, and its values used
    assert site(out, a2, b, 1.0, 1.0, row)
    np.testing.assert_allclose(out, a2 @ b + row, rtol=1e-5, atol=1e-5)
    assert site(out, a2, b, -1.0, 0.0)  # other scales, no row
    np.testing.assert_allclose(out, -(a2 @ b), rtol=1e-5, atol=1e-5)
    assert len(made) == 3
    other = np.zeros((9, 5), np.float32)
    other.flags.writeable = False
    assert not site(other, a, b, 1.0, 0.0)  # refused (read-only), nothing kept
    assert site.memo is None
    out.flags.writeable = False
    assert not site(out, a, b, 1.0, 0.0)


def test_a_gemm_site_does_not_keep_an_operand_alive():
    import gc as garbage
    import weakref

    rng = np.random.default_rng(8)
    site, out = accumulate.GemmSite(), np.zeros((4, 3), np.float32)
    a, b = rng.standard_normal((4, 2)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)
    assert site(out, a, b, 1.0, 0.0)
    gone = weakref.ref(a)
    del a
    garbage.collect()
    assert gone() is None  # the site held it weakly
    a2 = rng.standard_normal((4, 2)).astype(np.float32)  # may reuse the freed address: prepared again
    assert site(out, a2, b, 1.0, 0.0)
    np.testing.assert_allclose(out, a2 @ b, rtol=1e-5, atol=1e-6)
