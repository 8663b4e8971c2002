"""Fusion by op kind: kernel counts for the patterns the design promises, and legality."""

import numpy as np
import pytest

import graphc as gc
from graphc.backends.numba import fusable_reduction
from graphc.fusion import fuse
from graphc.ops.registry import Kind


def _kernels(g, roots):
    return fuse(g.live_nodes(roots), roots, fusable_reduction)


def test_chain_of_six_elementwise_ops_is_one_kernel():
    with gc.Graph() as g:
        x = g.input("x", ("batch", 7))
        y = gc.tanh(gc.exp(-(x * 2.0 + 1.0)) - 3.0)
    ks = _kernels(g, [y])
    assert len(ks) == 1 and ks[0].kind == "elementwise"
    assert len(ks[0].node_ids) == 6 and ks[0].outputs == [y.id]


def test_conv_bias_relu_is_one_kernel():
    with gc.Graph() as g:
        x = g.input("x", ("batch", 3, 8, 8))
        w = g.param("w", (4, 3, 3, 3))
        b = g.param("b", (4, 1, 1), init="zeros")
        y = gc.relu(gc.conv2d(x, w) + b)
    ks = _kernels(g, [y])
    assert [k.kind for k in ks] == ["output-fusable"]
    assert g.nodes[ks[0].anchor].op == "conv2d" and ks[0].outputs == [y.id]


def test_matmul_bias_tanh_is_one_kernel_and_backward_mask_fuses_into_gemm():
    with gc.Graph() as g:
        x = g.input("x", (4, 5))
        w = g.param("w", (5, 6))
        v = g.param("v", (6, 3))
        h = gc.relu(x @ w + 1.0)
        loss = gc.sum(gc.tanh(h @ v))
    gw = gc.grad(loss, w)
    ks = _kernels(g, [loss, gw])
    by_anchor = {g.nodes[k.anchor].id: k for k in ks if k.anchor is not None}
    fwd = by_anchor[h.inputs[0].inputs[0].id]
    assert {g.nodes[i].op for i in fwd.node_ids} >= {"matmul", "add", "relu"}
    # the relu mask where(x > 0, g, 0) runs in the epilogue of the GEMM that makes g
    mask_kernels = [k for k in ks if any(g.nodes[i].op == "where" for i in k.node_ids)]
    assert mask_kernels and all(k.kind == "output-fusable" for k in mask_kernels)


def test_materialised_values_and_no_cycles():
    with gc.Graph() as g:
        x = g.input("x", (3, 4))
        a = gc.exp(x)
        s = gc.sum(a, 1, keepdims=True)  # reduction reads a
        y = a / s  # consumer of both a and the reduction: must not join a's group (cycle)
    ks = _kernels(g, [y])
    group = {i: k.name for k in ks for i in k.node_ids}
    assert group[y.id] != group[s.id]
    order = [k.name for k in ks]
    assert order.index(group[s.id]) < order.index(group[y.id])
    red = next(k for k in ks if k.kind == "reduction")
    assert a.id in red.outputs  # a is read by y's kernel, so it is written out


def test_reduction_takes_its_elementwise_producers():
    with gc.Graph() as g:
        x = g.input("x", (3, 4))
        y = gc.mean(gc.square(gc.tanh(x) - 1.0), 0)
    ks = _kernels(g, [y])
    assert len(ks) == 1 and ks[0].kind == "reduction" and ks[0].outputs == [y.id]


def test_small_scalar_groups_are_absorbed():
    with gc.Graph() as g:
        x = g.input("x", (3, 4))
        t = g.variable("t", ())
        scale = 1.0 / (1.0 - gc.exp(t * -0.1))  # a bias-correction-like scalar
        y = x * scale
    ks = _kernels(g, [y])
    assert len(ks) == 1


MLP_KERNELS = 25  # see test_mlp_training_step_kernel_count


def _mlp():
    with gc.Graph("mlp") as g:
        x = g.input("x", ("batch", 784))
        y = g.input("y", ("batch",), "int64")
        h = x
        for i, (a, b) in enumerate([(784, 512), (512, 256), (256, 10)]):
            h = h @ g.param(f"W{i}", (a, b)) + g.param(f"b{i}", (b,), init="zeros")
            h = gc.relu(h) if i < 2 else h
        loss = gc.cross_entropy(h, y)
        g.output("loss", loss)
        for name, gr in gc.gradients(loss).items():
            g.update(name, g.params[name] - 0.01 * gr)
    return g


def test_mlp_training_step_kernel_count():
    """784-512-256-10 relu MLP, softmax cross-entropy, SGD: 25 kernel groups without graph passes.

    Forward: 3 GEMM+bias(+relu, +relu mask) kernels, the loss. Backward: one GEMM epilogue per
    relu mask, the dW GEMMs each fused with their SGD update, bias-gradient sums, the loss
    gradient (one cross_entropy_labels_grad); 6 transposes/reshapes (free views) and the mean's
    small backward ops.
    """
    g = _mlp()
    exe = gc.compile(g, "numba", passes=False)
    assert len(exe.kernels) == MLP_KERNELS, exe.summary()
    gemm = [k for k in exe.kernels if k.kind == "output-fusable"]
    assert len(gemm) == 8
    # each weight update is fused into the GEMM that computes its gradient
    for name in ("W0", "W1", "W2"):
        u = exe.graph.updates[name].id
        assert any(u in k.node_ids for k in gemm)
    xb = np.random.default_rng(0).standard_normal((16, 784)).astype(np.float32)
    yb = np.arange(16) % 10
    ref_g = _mlp()
    ref = gc.compile(ref_g, "reference")
    for _ in range(2):
        np.testing.assert_allclose(exe(x=xb, y=yb)["loss"], ref(x=xb, y=yb)["loss"], rtol=1e-5)
    for k in g.values:
        np.testing.assert_allclose(g.values[k], ref_g.values[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("passes", [True, False])
def test_kernels_listed_with_source(passes):
    g = _mlp()
    exe = gc.compile(g, "numba", passes=passes)
    exe(x=np.zeros((2, 784), np.float32), y=np.zeros(2, np.int64))
    loops = [k for k in exe.kernels if k.source]
    assert loops and all("def kernel(" in k.source for k in loops)
    assert "output-fusable" in exe.summary()


def test_matmul_bias_tanh_compiles_to_one_kernel_matching_the_reference():
    with gc.Graph("mbt") as g:
        x = g.input("x", ("batch", 5))
        w = g.param("w", (5, 6))
        b = g.param("b", (6,), init="normal")
        g.output("y", gc.tanh(x @ w + b))
    step = gc.compile(g, "numba")
    assert len(step.kernels) == 1 and step.kernels[0].kind == "output-fusable"
    assert {step.graph.nodes[i].op for i in step.kernels[0].node_ids} == {"matmul", "add", "tanh"}
    xv = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    np.testing.assert_allclose(step(x=xv)["y"], gc.run(g, {"x": xv})["y"], rtol=1e-5, atol=1e-6)


def _assert_valid_schedule(g, ks):
    """Every kernel reads only sources and values made by kernels before it."""
    made = {n.id for n in g.nodes if n.opdef.kind is Kind.SOURCE}
    for k in ks:
        assert set(k.inputs) <= made, k
        made |= set(k.node_ids)


def test_group_level_cycle_through_a_reduction_and_its_gradient_is_avoided():
    """`cast(k) * sigmoid(x)` joins cast's group; the gradient `reshape(sum(cast(k))) * sigmoid(x)`
    must not join sigmoid's group: no node path joins them, but a path of groups does
    (sigmoid -> mul/cast -> sum -> reshape -> sigmoid's group), which crashed the scheduler."""
    with gc.Graph("cyc") as g:
        x = g.input("x", (1, 5))
        k = g.input("k", (5, 5), dtype="int64")
        loss = gc.sum(gc.cast(k, "float32") * gc.sigmoid(x))
    gx = gc.grad(loss, x)
    _assert_valid_schedule(g, _kernels(g, [loss, gx]))
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((1, 5)).astype(np.float32), "k": rng.integers(-3, 4, (5, 5))}
    step = gc.compile(g, "numba", outputs=[loss, gx])
    _assert_valid_schedule(step.graph, step.kernels)
    got, want = step(feeds), gc.compile(g, "reference", outputs=[loss, gx])(feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
