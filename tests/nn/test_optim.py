"""Optimizer updates built as graph ops match the textbook NumPy formulas, step after step."""

import math

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.errors import AttributeValueError, GraphStructureError
from graphc.nn import schedules

RNG = np.random.default_rng(0)
W0 = {"w": RNG.standard_normal((3, 2)), "b": RNG.standard_normal((2,))}
C = {"w": RNG.uniform(0.5, 2.0, (3, 2)), "b": RNG.uniform(0.5, 2.0, (2,))}
D = {"w": RNG.standard_normal((3, 2)), "b": RNG.standard_normal((2,))}
STEPS = 6


def _grad(w):
    """Gradient of the quadratic loss below: C * w + D (per parameter)."""
    return {k: C[k] * w[k] + D[k] for k in w}


def _build(opt, dtype="float64"):
    with gc.Graph("q") as g:
        params = {k: g.param(k, v.shape, init=v, dtype=dtype) for k, v in W0.items()}
        loss = sum(
            gc.sum(0.5 * gc.constant(C[k], dtype) * p * p + gc.constant(D[k], dtype) * p) for k, p in params.items()
        )
    tg = nn.training_graph(loss, opt)
    return g, tg, tg.compile("reference")


def _run(opt, dtype="float64"):
    g, tg, step = _build(opt, dtype)
    traj = []
    for _ in range(STEPS):
        step()
        traj.append({k: g.values[k].copy() for k in W0})
    return g, tg, traj


# -- textbook reference implementations ---------------------------------------------------------
def _clip(gr, clip_norm):
    if clip_norm is None:
        return gr
    norm = math.sqrt(sum(float(np.sum(v * v)) for v in gr.values()))
    return {k: v * clip_norm / max(norm, clip_norm) for k, v in gr.items()}


def ref_sgd(lr, momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=None, lr_at=None):
    w = {k: v.copy() for k, v in W0.items()}
    vel = {k: np.zeros_like(v) for k, v in w.items()}
    out = []
    for t in range(STEPS):
        gr = _clip(_grad(w), clip_norm)
        rate = lr_at(t) if lr_at else lr
        for k in w:
            g = gr[k] + weight_decay * w[k]
            if momentum:
                vel[k] = momentum * vel[k] + g
                g = g + momentum * vel[k] if nesterov else vel[k]
            w[k] = w[k] - rate * g
        out.append({k: v.copy() for k, v in w.items()})
    return out


def ref_adam(lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False, clip_norm=None):
    w = {k: v.copy() for k, v in W0.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v2 = {k: np.zeros_like(v) for k, v in w.items()}
    out = []
    for t in range(1, STEPS + 1):
        gr = _clip(_grad(w), clip_norm)
        for k in w:
            g = gr[k] if decoupled else gr[k] + weight_decay * w[k]
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v2[k] = beta2 * v2[k] + (1 - beta2) * g * g
            m_hat = m[k] / (1 - beta1**t)
            v_hat = v2[k] / (1 - beta2**t)
            new = w[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
            if decoupled:
                new = new - lr * weight_decay * w[k]
            w[k] = new
        out.append({k: val.copy() for k, val in w.items()})
    return out, m, v2


def ref_rmsprop(lr, rho=0.9, eps=1e-8, momentum=0.0):
    w = {k: v.copy() for k, v in W0.items()}
    s = {k: np.zeros_like(v) for k, v in w.items()}
    buf = {k: np.zeros_like(v) for k, v in w.items()}
    out = []
    for _ in range(STEPS):
        gr = _grad(w)
        for k in w:
            s[k] = rho * s[k] + (1 - rho) * gr[k] ** 2
            step = gr[k] / (np.sqrt(s[k]) + eps)
            if momentum:
                buf[k] = momentum * buf[k] + step
                step = buf[k]
            w[k] = w[k] - lr * step
        out.append({k: v.copy() for k, v in w.items()})
    return out


def _assert_traj(got, want, rtol=1e-10, atol=1e-12):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=f"step {i + 1}, {k}")
    # the trajectory really moves: a no-op optimizer would fail these comparisons
    assert not np.allclose(got[-1]["w"], W0["w"])


CASES = {
    "gd": (lambda: nn.GD(0.1), lambda: ref_sgd(0.1)),
    "sgd": (lambda: nn.SGD(0.1), lambda: ref_sgd(0.1)),
    "sgd_momentum": (lambda: nn.SGD(0.05, momentum=0.9), lambda: ref_sgd(0.05, 0.9)),
    "sgd_nesterov": (lambda: nn.SGD(0.05, momentum=0.8, nesterov=True), lambda: ref_sgd(0.05, 0.8, True)),
    "sgd_weight_decay": (lambda: nn.SGD(0.05, momentum=0.5, weight_decay=0.1), lambda: ref_sgd(0.05, 0.5, False, 0.1)),
    "gd_clip": (lambda: nn.GD(0.1, clip_norm=0.5), lambda: ref_sgd(0.1, clip_norm=0.5)),
    "adam": (lambda: nn.Adam(0.1), lambda: ref_adam(0.1)[0]),
    "adam_betas": (lambda: nn.Adam(0.05, beta1=0.5, beta2=0.9, eps=1e-3), lambda: ref_adam(0.05, 0.5, 0.9, 1e-3)[0]),
    "adam_l2": (lambda: nn.Adam(0.1, weight_decay=0.2), lambda: ref_adam(0.1, weight_decay=0.2)[0]),
    "adamw": (lambda: nn.AdamW(0.1, weight_decay=0.2), lambda: ref_adam(0.1, weight_decay=0.2, decoupled=True)[0]),
    "adam_clip": (lambda: nn.Adam(0.1, clip_norm=0.3), lambda: ref_adam(0.1, clip_norm=0.3)[0]),
    "rmsprop": (lambda: nn.RMSprop(0.01), lambda: ref_rmsprop(0.01)),
    "rmsprop_momentum": (lambda: nn.RMSprop(0.01, rho=0.8, momentum=0.9), lambda: ref_rmsprop(0.01, 0.8, 1e-8, 0.9)),
}


@pytest.mark.parametrize("case", CASES)
def test_updates_match_textbook(case):
    make, ref = CASES[case]
    _, _, traj = _run(make())
    _assert_traj(traj, ref())


def test_adam_state_and_bias_correction():
    g, tg, traj = _run(nn.Adam(0.1))
    want, m, v = ref_adam(0.1)
    np.testing.assert_allclose(g.values["adam/m/w"], m["w"], rtol=1e-12)
    np.testing.assert_allclose(g.values["adam/v/b"], v["b"], rtol=1e-12)
    assert float(g.values["adam/step"]) == STEPS
    # bias correction matters: the first step of Adam moves each weight by ~lr
    first = np.abs(traj[0]["w"] - W0["w"])
    np.testing.assert_allclose(first, 0.1, rtol=1e-5)
    assert tg.state_names == ["adam/step", "adam/m/w", "adam/v/w", "adam/m/b", "adam/v/b"]
    assert set(tg.updates) == {"w", "b", *tg.state_names}


def test_float32_parameters_match_within_float32_precision():
    _, _, traj = _run(nn.Adam(0.1), dtype="float32")
    want = ref_adam(0.1)[0]
    assert traj[0]["w"].dtype == np.float32
    _assert_traj(traj, want, rtol=1e-4, atol=1e-5)


def test_clipping_exposes_the_global_norm():
    opt = nn.SGD(0.1, clip_norm=0.5)
    g, tg, step = _build(opt)
    norm = gc.run(g, outputs=opt.grad_norm, apply_updates=False)
    want = math.sqrt(sum(float(np.sum(v * v)) for v in _grad(W0).values()))
    assert want > 0.5  # the clip is active in this problem
    np.testing.assert_allclose(norm, want, rtol=1e-12)


@pytest.mark.parametrize("w0", [[3.0, 4.0], [0.0, 0.0]])
def test_clipping_has_no_epsilon(w0):
    """docs/nn.md: the scale is clip_norm / max(norm, clip_norm), so a clipped step has exactly
    clip_norm's length (PyTorch's clip_norm / (norm + 1e-6) would leave w at 2.4000000479...),
    and a zero gradient is scaled by 1, not turned into NaN."""
    with gc.Graph("clip") as g:
        w = g.param("w", (2,), init=np.array(w0), dtype="float64")
        loss = 0.5 * gc.sum(w * w)  # gradient: w, of norm 5
    step = nn.training_graph(loss, nn.GD(1.0, clip_norm=1.0)).compile("reference")
    step()
    want = np.array(w0) * (1 - 1 / 5) if any(w0) else np.zeros(2)
    np.testing.assert_allclose(g.values["w"], want, rtol=0, atol=1e-15)


# -- schedules ------------------------------------------------------------------------------------
SCHEDULES = {
    "step": (schedules.StepDecay(3, gamma=0.5), lambda lr, t: lr * 0.5 ** (t // 3)),
    "exp": (schedules.ExponentialDecay(0.9), lambda lr, t: lr * 0.9**t),
    "cosine": (
        schedules.CosineDecay(10, min_lr=0.01),
        lambda lr, t: 0.01 + (lr - 0.01) * 0.5 * (1 + math.cos(math.pi * min(t, 10) / 10)),
    ),
    "warmup_cosine": (
        schedules.Warmup(4, schedules.CosineDecay(8)),
        lambda lr, t: min((t + 1) / 4, 1.0) * lr * 0.5 * (1 + math.cos(math.pi * min(max(t - 4, 0), 8) / 8)),
    ),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedules_in_graph_match_formula(name):
    sched, formula = SCHEDULES[name]
    with gc.Graph("s") as g:
        t = g.input("t", (), "float64")
        lr = sched(0.2, t)
    for step in range(0, 16):
        got = float(gc.run(g, {"t": np.float64(step)}, outputs=lr))
        assert got == pytest.approx(formula(0.2, step), rel=1e-9, abs=1e-12), step
        assert sched.value(0.2, step) == pytest.approx(formula(0.2, step), rel=1e-12, abs=1e-15)


def test_optimizer_follows_schedule_from_its_step_variable():
    sched = schedules.StepDecay(2, gamma=0.5)
    _, tg, traj = _run(nn.SGD(0.2, momentum=0.5, schedule=sched))
    _assert_traj(traj, ref_sgd(0.2, 0.5, lr_at=lambda t: 0.2 * 0.5 ** (t // 2)))
    assert tg.optimizer.lr_node is not None


def test_cosine_schedule_with_adam():
    sched = schedules.CosineDecay(4)
    _, _, traj = _run(nn.GD(0.3, schedule=sched))
    _assert_traj(traj, ref_sgd(0.3, lr_at=lambda t: sched.value(0.3, t)))
    np.testing.assert_allclose(traj[-1]["w"], traj[-2]["w"])  # lr is 0 after total_steps


# -- bad options ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: nn.Adam(lr=-0.1), ["Adam", "'lr'", "-0.1"]),
        (lambda: nn.SGD(0.1, momentum=1.0), ["SGD", "'momentum'", "[0.0, 1.0)"]),
        (lambda: nn.SGD(0.1, momentum=-0.5), ["SGD", "'momentum'"]),
        (lambda: nn.SGD(0.1, nesterov=True), ["SGD", "nesterov", "momentum > 0"]),
        (lambda: nn.Adam(0.1, beta1=1.5), ["Adam", "'beta1'"]),
        (lambda: nn.Adam(0.1, betas=(0.9, 0.99)), ["Adam", "unknown option 'betas'", "beta1"]),
        (lambda: nn.GD(0.1, momentum=0.9), ["GD", "unknown option 'momentum'"]),
        (lambda: nn.RMSprop(0.1, eps=0.0), ["RMSprop", "'eps'"]),
        (lambda: nn.AdamW(0.1, weight_decay=-1), ["AdamW", "'weight_decay'"]),
        (lambda: nn.Adam(0.1, clip_norm=0), ["Adam", "'clip_norm'"]),
        (lambda: nn.Adam(0.1, schedule="cosine"), ["Adam", "schedule"]),
        (lambda: nn.SGD(float("nan")), ["SGD", "'lr'"]),
        (lambda: schedules.StepDecay(0), ["StepDecay", "step_size"]),
        (lambda: schedules.CosineDecay(10, min_lr=-1.0), ["CosineDecay", "min_lr"]),
        (lambda: nn.optim.get("adagrad"), ["unknown optimizer 'adagrad'"]),
    ],
)
def test_bad_options_are_clear_errors(make, words):
    with pytest.raises(AttributeValueError) as info:
        make()
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    assert "test_optim.py:" in msg  # the user's line


def test_optimizer_by_name_and_config():
    opt = nn.optim.get("adamw", lr=0.01)
    assert isinstance(opt, nn.AdamW)
    assert opt.config == {"optimizer": "AdamW", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                          "weight_decay": 0.01, "clip_norm": None, "schedule": None}  # fmt: skip


def test_an_optimizer_serves_one_graph_and_a_graph_one_training_step():
    opt = nn.SGD(0.1)
    _build(opt)
    with pytest.raises(GraphStructureError, match="already updates graph 'q'"):
        _build(opt)
    g, tg, _ = _build(nn.SGD(0.1))
    with pytest.raises(GraphStructureError, match="already have updates"):
        nn.training_graph(tg.loss, nn.Adam())
