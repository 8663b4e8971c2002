"""Bad input on the CUDA backend: the same errors as the CPU backends; no device: a clear error."""

import os
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.errors import IndexRangeError, InputError


def _labels_graph(computed: bool):
    with gc.Graph("ce") as g:
        x = g.input("x", ("batch", 4))
        y = g.input("y", ("batch",), "int64")
        if computed:  # labels made on the device: the kernel's flag is read back
            y = gc.cast(gc.cast(y, "float32") * 2.0, "int64")
        g.output("loss", gc.cross_entropy(x, y))
    return g


@pytest.mark.parametrize("computed", [False, True])
@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_a_label_out_of_range_is_the_same_index_range_error(backend, computed):
    step = gc.compile(_labels_graph(computed), backend)
    x = np.zeros((3, 4), np.float32)
    np.testing.assert_allclose(step(x=x, y=np.array([0, 1, 1]) if computed else np.array([0, 3, 1]))["loss"], np.log(4))
    bad = np.array([0, 2, 1]) if computed else np.array([0, 4, 1])
    with pytest.raises(IndexRangeError, match=r"cross_entropy: label 4 at position \(1,\) is out of range \[0, 4\)"):
        step(x=x, y=bad)


@pytest.mark.parametrize("computed", [False, True])
@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_a_label_out_of_range_in_the_gradient_alone_is_the_same_error(backend, computed):
    g = _labels_graph(computed)
    with g:  # the loss is not an output: its gradient op alone reads the labels
        (gx,) = gc.grad(g.outputs["loss"], [g.inputs["x"]])
    step = gc.compile(g, backend, outputs=[gx])
    x = np.zeros((3, 4), np.float32)
    want = (np.full((3, 4), 0.25) - np.eye(4)[[0, 2, 2]]) / 3
    good = np.array([0, 1, 1]) if computed else np.array([0, 2, 2])  # labels 0, 2, 2 either way
    np.testing.assert_allclose(step(x=x, y=good)[0], want, rtol=1e-6)
    bad = np.array([0, 2, 1]) if computed else np.array([0, 4, 1])
    with pytest.raises(IndexRangeError, match=r"cross_entropy: label 4 at position \(1,\) is out of range \[0, 4\)"):
        step(x=x, y=bad)


@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_take_and_one_hot_out_of_range(backend):
    with gc.Graph("t") as g:
        table = g.param("table", (5, 2), init=np.arange(10.0, dtype=np.float32).reshape(5, 2))
        i = g.input("i", (3,), "int64")
        j = g.input("j", (3,), "int64")
        g.output("rows", gc.take(table, i))
        g.output("hot", gc.one_hot(j, 5))
    step = gc.compile(g, backend)
    got = step(i=np.array([0, -1, 4]), j=np.array([0, 4, 2]))
    np.testing.assert_array_equal(got["rows"], [[0, 1], [8, 9], [8, 9]])
    np.testing.assert_array_equal(got["hot"].argmax(1), [0, 4, 2])
    with pytest.raises(IndexRangeError, match=r"take: index 5 at position \(2,\) is out of range \[-5, 5\)"):
        step(i=np.array([0, 1, 5]), j=np.array([0, 4, 2]))
    with pytest.raises(IndexRangeError, match=r"one_hot: label -1 at position \(1,\) is out of range \[0, 5\)"):
        step(i=np.array([0, 1, 2]), j=np.array([0, -1, 2]))


@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_feeds_of_the_wrong_shape_or_dtype_are_the_same_input_errors(backend):
    step = gc.compile(_labels_graph(False), backend)
    with pytest.raises(InputError, match=r"input 'x' \(f32\[batch,4\]\).*"):
        step(x=np.zeros((3, 5), np.float32), y=np.zeros(3, np.int64))
    with pytest.raises(InputError, match=r"input 'y' .*does not convert to int64"):
        step(x=np.zeros((3, 4), np.float32), y=np.zeros(3, np.float32))


@pytest.mark.anywhere
def test_without_a_gpu_or_the_simulator_compiling_names_both_ways_forward():
    from graphc.backends.cuda.device import possible

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    script = (
        "import sys, graphc as gc\n"
        "from graphc.backends import backend_names\n"
        "with gc.Graph('g') as g:\n"
        "    g.output('y', g.input('x', (2,)) * 2.0)\n"
        "assert 'numba.cuda' not in sys.modules, 'importing graphc imported numba.cuda'\n"
        "print('cuda' in backend_names())\n"
        "try:\n"
        "    gc.compile(g, 'cuda')\n"
        "except gc.GraphcError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ok_without_sim = possible()[0] if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "0" else None
    if ok_without_sim:
        pytest.skip("this machine has an NVIDIA driver: compiling for cuda works here")
    listed, message = out.stdout.splitlines()[:2]
    assert listed == "False"
    assert message.startswith("CudaUnavailableError backend 'cuda'")
    assert "pip install -e '.[cuda]'" in message and "NUMBA_ENABLE_CUDASIM=1" in message


@pytest.mark.anywhere
def test_importing_graphc_and_listing_backends_never_imports_numba_cuda():
    script = "import sys, graphc\nfrom graphc.backends import backend_names\nbackend_names()\n"
    script += "print('numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
