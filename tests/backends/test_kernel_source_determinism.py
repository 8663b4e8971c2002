"""The same graph generates the same kernels, with the same source, in every process.

A kernel's source is its disk-cache key: if it changed from one process to the next (a
different grouping, `F(x1 + x0)` for `F(x0 + x1)`), a warm cache would be missed.
"""

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import fusion

pytest.importorskip("numba")


def _diamonds():
    """A graph whose fusion once depended on the iteration order of a set of groups (a random
    program of tests/backends/test_random_graphs.py that fused two ways)."""
    with gc.Graph("diamonds") as g:
        x = g.input("x", (2, 5))
        v = g.input("v", (5,))
        c = g.input("c", (2, 1))
        w = g.param("w", (5, 8), init="normal")
        a = w + gc.mean(v)
        b = v - gc.mean(c)
        d = x + -2.0
        t = gc.tanh(a)
        e = t / (1.0 + gc.mean(x) * gc.mean(x))
        f = gc.max(b, axis=0, keepdims=True)
        loss = gc.sum(gc.tanh(f)) * 1.0 + 0.5 * gc.mean(d) - 1.5 * gc.mean(t) + 2.0 * gc.mean(e)
        g.output("last", f)
        g.output("loss", loss)
        gx, gw = gc.grad(loss, [x, w])
        g.output("gx", gx)
        g.update("w", w - 0.1 * gw)
    return g


def _kernels(g):
    exe = gc.compile(g, "numba")
    return [(k.kind, k.node_ids, k.outputs, k.inputs) for k in exe.kernels]


def test_fusion_does_not_depend_on_the_addresses_of_its_groups(monkeypatch):
    # a set of groups iterates in the order of their hashes, i.e. of their memory addresses,
    # which differ from one process to the next: give the groups random hashes instead
    seen = set()
    for seed in range(8):
        rng, table = random.Random(seed), {}
        monkeypatch.setattr(fusion._Group, "__hash__", lambda g, r=rng, t=table: t.setdefault(id(g), r.getrandbits(60)))
        seen.add(json.dumps(_kernels(_diamonds())))
    assert len(seen) == 1


SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import graphc as gc
    from graphc import nn
    from graphc.backends.numba import compile_stats
    from test_kernel_source_determinism import GRAPHS

    out = {}
    for name, make in GRAPHS.items():
        g, feeds = make()
        exe = gc.compile(g, "numba")
        exe(feeds)
        out[name] = [[k.name, k.source] for k in exe.kernels]
    print(json.dumps({"kernels": out, "stats": compile_stats()}))
""")


def _mlp():
    from graphc import nn

    net = nn.Sequential([nn.Dense(16, activation="relu"), nn.Dense(10)], name="mlp")
    with gc.Graph("m", seed=0) as g:
        x = g.input("x", ("batch", 8))
        y = g.input("y", ("batch",), "int64")
        loss = nn.losses.cross_entropy(net(x, training=True), y)
        nn.training_graph(loss, nn.optim.Adam(1e-3))
        g.output("loss", loss)
    return g, {"x": np.ones((4, 8), np.float32), "y": np.arange(4) % 10}


def _cnn():
    from graphc import nn

    layers = [nn.Conv2D(4, 3, padding=1), nn.BatchNorm2D(), nn.Activation("relu"), nn.MaxPool2D(2), nn.Flatten()]
    net = nn.Sequential([*layers, nn.Dense(10)], name="cnn")
    with gc.Graph("c", seed=0) as g:
        x = g.input("x", ("batch", 1, 8, 8))
        y = g.input("y", ("batch",), "int64")
        loss = nn.losses.cross_entropy(net(x, training=True), y)
        nn.training_graph(loss, nn.optim.SGD(0.1, momentum=0.9))
        g.output("loss", loss)
    return g, {"x": np.ones((2, 1, 8, 8), np.float32), "y": np.arange(2)}


def _chain():
    """Commutative ops whose operands come from different places (inputs, a matmul, a sum)."""
    with gc.Graph("e") as g:
        a = g.input("a", (3, 4))
        b = g.input("b", (3, 4))
        c = g.input("c", (4,))
        w = g.param("w", (4, 4))
        t = (a @ w) + b
        u = gc.maximum(b * a, c) + gc.minimum(c, a) * (b + c)
        g.output("y", gc.exp(t * u) + (a * b) * c + gc.sum(t, 1, keepdims=True))
        g.output("s", gc.sum(u + t, 1))
    r = np.random.default_rng(0)
    return g, {"a": r.random((3, 4), np.float32), "b": r.random((3, 4), np.float32), "c": r.random(4, np.float32)}


def _diamonds_step():
    r = np.random.default_rng(0)
    return _diamonds(), {k: r.random(s, np.float32) for k, s in (("x", (2, 5)), ("v", (5,)), ("c", (2, 1)))}


GRAPHS = {"mlp": _mlp, "cnn": _cnn, "chain": _chain, "diamonds": _diamonds_step}


def test_same_graphs_same_kernel_source_in_every_process_and_a_warm_cache_hit():
    here = Path(__file__).resolve().parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(here.parents[1]), str(here), env.get("PYTHONPATH", "")])
    runs = []
    for seed in ("0", "1", "12345"):
        env["PYTHONHASHSEED"] = seed
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = runs[0]["kernels"]
    assert sum(bool(src) for ks in first.values() for _, src in ks) >= 20  # generated loop kernels
    for other in runs[1:]:
        for name in GRAPHS:
            assert other["kernels"][name] == first[name], name
        # the first process filled the cache (if earlier tests had not): the others compile nothing
        assert other["stats"]["compiled"] == 0 and other["stats"]["loaded"] > 0, other["stats"]
