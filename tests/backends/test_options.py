"""gc.compile's options are checked in one place for every backend; every executable has the
same introspection (summary, report); only the backends that exist are listed."""

import inspect

import numpy as np
import pytest

import graphc as gc
from graphc.backends import backend_names, get_backend
from graphc.errors import OptionError

BACKENDS = ["reference", "numba"]


def small():
    with gc.Graph("small") as g:
        x = g.input("x", (2, 3))
        w = g.param("w", (3, 2), init="ones")
        g.output("y", gc.tanh(x @ w) * 2.0)
    return g


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_option_names_it_and_lists_the_backends_options(backend):
    with pytest.raises(OptionError) as e:
        gc.compile(small(), backend, foo=1, passes=True)  # was TypeError from __init__
    assert str(e.value).startswith(
        f"compile: backend {backend!r} has no option 'foo' (its options: apply_updates, passes, disable, trace)"
    )
    assert "test_options.py:" in str(e.value)  # the user's line
    assert isinstance(e.value, gc.GraphcError) and isinstance(e.value, TypeError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_declared_options_are_what_the_executable_takes(backend):
    cls = get_backend(backend)
    exe = type(gc.compile(small(), backend))
    params = list(inspect.signature(exe.__init__).parameters)[3:]  # after self, graph, outputs
    assert tuple(params) == cls.options


def test_only_existing_backends_are_listed():
    names = backend_names()
    assert [b for b in names if b != "cuda"] == ["numba", "reference"]  # cuda: where a GPU or the simulator is
    with pytest.raises(gc.GraphcError, match=rf"^unknown backend 'tpu'; available: {', '.join(names)}$"):
        gc.compile(small(), "tpu")


def test_summary_is_one_interface_on_every_backend():
    g = small()
    ref, fused = gc.compile(g, "reference"), gc.compile(g, "numba")
    lines = ref.summary().splitlines()
    # the reference runs every op node as its own kernel: matmul, tanh, mul
    assert [ln.split()[0] for ln in lines] == ["matmul#2", "tanh#3", "mul#5"]
    assert lines[0].split()[1:] == ["output-fusable", "1", "nodes", "->", "matmul#2"]
    assert len(fused.summary().splitlines()) == len(fused.kernels) < len(lines)
    for exe in (ref, fused):
        np.testing.assert_allclose(exe(x=np.ones((2, 3)))["y"], 2 * np.tanh(np.full((2, 2), 3.0)), rtol=1e-6)
