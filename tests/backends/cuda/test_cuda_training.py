"""Training on the CUDA backend: an MLP and a CNN converge, step by step as on the reference;
the same kernel groups as the CPU backend; variables stay on the device (counted transfers)."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from tests.backends.test_all_backends import cnn, mlp

RTOL = 1e-3


def _mlp_feeds(rng, n):
    return {"x": rng.standard_normal((n, 7)).astype(np.float32), "y": rng.integers(0, 3, n)}


def _adam_mlp():
    g = mlp(loss_only=True)
    gc.training_graph(g.outputs["loss"], gc.optim.Adam(0.05))
    return g


def test_mlp_trains_with_adam_step_for_step_as_the_reference_and_converges():
    g, gr = _adam_mlp(), _adam_mlp()
    exe, ref = gc.compile(g, "cuda"), gc.compile(gr, "reference")
    feeds = _mlp_feeds(np.random.default_rng(0), 8)
    losses = []
    for step in range(25):
        got = float(exe(feeds)["loss"])
        if step < 3:
            np.testing.assert_allclose(got, ref(feeds)["loss"], rtol=RTOL, err_msg=f"step {step}")
        losses.append(got)
    assert losses[-1] < 0.2 * losses[0], losses  # one batch, learnt
    for _ in range(22):
        ref(feeds)
    for k, v in gr.values.items():  # after 25 steps each, the same parameters and moments
        np.testing.assert_allclose(g.values[k], v, rtol=2e-2, atol=2e-3, err_msg=k)


def _small_cnn():
    """conv+bias+relu, max pool, dense: the CNN of test_all_backends, smaller (the simulator)."""
    with gc.Graph("cnn") as g:
        x = g.input("x", ("batch", 1, 6, 6))
        y = g.input("y", ("batch",), "int64")
        h = gc.relu(gc.conv2d(x, g.param("conv/w", (3, 1, 3, 3)), padding=1) + g.param("conv/b", (3, 1, 1)))
        h = gc.reshape(gc.max_pool2d(h, 2), ("batch", 27))
        logits = h @ g.param("dense/w", (27, 3)) + g.param("dense/b", (3,), init="normal")
        g.output("loss", gc.cross_entropy(logits, y))
    gc.training_graph(g.outputs["loss"], gc.optim.SGD(0.2))
    return g


def test_cnn_trains_with_sgd():
    g, gr = _small_cnn(), _small_cnn()
    exe, ref = gc.compile(g, "cuda"), gc.compile(gr, "reference")
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((4, 1, 6, 6)).astype(np.float32), "y": np.array([0, 2, 1, 1])}
    losses = [float(exe(feeds)["loss"]) for _ in range(10)]
    want = [float(ref(feeds)["loss"]) for _ in range(3)]
    np.testing.assert_allclose(losses[:3], want, rtol=RTOL)
    assert losses[-1] < 0.5 * losses[0], losses


def test_kernel_groups_are_the_cpu_backends():
    for build in (mlp, cnn, _adam_mlp):
        cpu, dev = gc.compile(build(), "numba"), gc.compile(build(), "cuda")
        assert [k.kind for k in dev.kernels] == [k.kind for k in cpu.kernels]
        assert [k.name for k in dev.kernels] == [k.name for k in cpu.kernels]
        assert dev.report()["fuse"].kernels_after == cpu.report()["fuse"].kernels_after


def test_a_training_loop_copies_no_parameters_per_step():
    g = _adam_mlp()
    n_vars = len(g.values)
    nbytes = sum(v.nbytes for v in g.values.values())
    exe = gc.compile(g, "cuda")
    rng = np.random.default_rng(2)
    up = exe.variables.transfers
    steps = 6
    for _ in range(steps):
        exe(_mlp_feeds(rng, 5))  # the batch is symbolic: the first call specialises (and copies up)
    t = exe.transfers
    assert t.total("h2d", "input") == 2 * steps  # x and y each step
    assert t.total("d2h", "output") == steps  # the loss, nothing else
    assert t.total("h2d", "random") == 0
    assert up.total("h2d") == n_vars and up.total("d2h") == 0  # no variable crossed per step
    # reading graph.values copies each variable down once; reading again copies nothing
    snapshot = {k: np.array(v) for k, v in g.values.items()}
    assert up.total("d2h", "variable") == n_vars and up.total_bytes("d2h") == nbytes
    dict(g.values)
    assert up.total("d2h", "variable") == n_vars
    # a step after an unchanged read copies nothing up; a read array keeps the values of its read
    held = g.values["w0"]
    exe(_mlp_feeds(rng, 5))
    assert up.total("h2d") == n_vars
    np.testing.assert_array_equal(held, snapshot["w0"])
    assert not np.array_equal(g.values["w0"], snapshot["w0"])  # read again: the step's update
    assert g.values["w0"] is held  # copied down in place
    text = str(exe.report())
    assert f"host -> device: {n_vars} copies" in text.split("variables: ")[1]
    assert "simulated CUDA device" in text or "compute capability" in text


def test_host_writes_to_variables_reach_the_device():
    g = _adam_mlp()
    exe = gc.compile(g, "cuda", outputs="loss", apply_updates=False)
    feeds = _mlp_feeds(np.random.default_rng(3), 5)
    before = float(exe(feeds))
    w = g.values["w2"]
    np.copyto(w, 0.0)  # in place, into the array graph.values handed out
    g.values["b2"] = np.zeros_like(g.values["b2"])  # a new array
    zeroed = float(exe(feeds))
    assert zeroed != pytest.approx(before)
    np.testing.assert_allclose(zeroed, np.log(3), rtol=1e-5)  # zero logits: uniform over 3 classes
    assert g.values["w2"] is w and not w.any()


def test_an_evaluation_step_sees_the_training_steps_parameters():
    g = _adam_mlp()
    train = gc.compile(g, "cuda")
    evaluate = gc.compile(g, "cuda", outputs="loss", apply_updates=False)
    feeds = _mlp_feeds(np.random.default_rng(4), 6)
    first = float(evaluate(feeds))
    for _ in range(5):
        train(feeds)
    after = float(evaluate(feeds))
    assert after < first
    on_host = gc.compile(g, "reference", outputs="loss", apply_updates=False)(feeds)  # reads graph.values
    np.testing.assert_allclose(after, on_host, rtol=RTOL)


def test_nn_model_fits_evaluates_and_predicts_on_cuda(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((48, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    model = nn.Model(nn.Sequential([nn.Dense(8, activation="tanh"), nn.Dense(2)]), input_shape=(6,),
                     optimizer=nn.optim.Adam(lr=0.05), backend="cuda", seed=0)  # fmt: skip
    h = model.fit(X, y, epochs=4, batch_size=16, progress=False)
    assert h["loss"][-1] < h["loss"][0]
    p = model.predict(X[:5])
    assert p.shape == (5, 2)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    assert model.evaluate(X, y)["accuracy"] > 0.8
    assert model.train_step.kernels and type(model.train_step).__name__ == "CudaExecutable"
    # a checkpoint holds the device's values; loaded on the CPU it predicts the same
    model.save(tmp_path / "m")
    on_cpu = nn.Model.load(tmp_path / "m", backend="numba")
    np.testing.assert_allclose(on_cpu.predict(X[:5]), p, rtol=1e-4, atol=1e-6)
    # weights loaded into the cuda model from the host reach the device
    other = nn.Model(nn.Sequential([nn.Dense(8, activation="tanh"), nn.Dense(2)]), input_shape=(6,),
                     optimizer=nn.optim.Adam(lr=0.05), backend="cuda", seed=1)  # fmt: skip
    assert not np.allclose(other.predict(X[:5]), p, atol=1e-4)
    other.load_weights(tmp_path / "m")
    np.testing.assert_allclose(other.predict(X[:5]), p, rtol=1e-4, atol=1e-6)


def _statements(source: str) -> list[str]:
    """A kernel's computing statements (v0 = ..., t0 = ...), the CPU's vector math read as math."""
    lines = [ln.strip().replace("_vexp(", "math.exp(").replace("_vtanh(", "math.tanh(") for ln in source.splitlines()]
    return [ln for ln in lines if ln[:1] in "vt" and " = " in ln and ln.split(" = ")[0][1:].isdigit()]


def test_kernels_compute_with_the_cpu_kernels_statements():
    cpu, dev = gc.compile(_adam_mlp(), "numba"), gc.compile(_adam_mlp(), "cuda")
    cpu.runtime({"batch": 3}), dev.runtime({"batch": 3})
    generated = [(a, b) for a, b in zip(cpu.kernels, dev.kernels) if "def kernel" in a.source]
    assert len(generated) > 5
    for a, b in generated:
        assert "@cuda.jit" in b.source
        assert _statements(b.source) == _statements(a.source), a.name
    assert sum(len(_statements(a.source)) > 2 for a, _ in generated) > 3  # fused chains, not just copies


def test_a_variable_set_to_a_strided_array_is_updated_and_read_back():
    with gc.Graph("g") as g:
        x = g.input("x", (2,))
        w = g.param("w", (2,), init=np.array([1.0, 2.0], np.float32))
        g.output("y", x * w)
        g.update("w", w * 2.0)
    step = gc.compile(g, "cuda")
    np.testing.assert_array_equal(step(x=np.ones(2, np.float32))["y"], [1, 2])
    strided = np.array([[1.0, 5.0], [3.0, 4.0]], np.float32)[:, 0]
    g.values["w"] = strided
    np.testing.assert_array_equal(step(x=np.ones(2, np.float32))["y"], [1, 3])
    assert g.values["w"] is strided
    np.testing.assert_array_equal(strided, [2, 6])
