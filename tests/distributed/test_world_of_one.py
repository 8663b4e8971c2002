"""Distributed training without MPI: a world of one, the all-reduce in the training graph, the
shards of Batches, and the errors of bad set-ups. No mpiexec needed."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.distributed.gradients import GLOBAL_LOSS
from graphc.errors import DistributedError, GraphFileError, InputError
from graphc.nn.data import Batches
from graphc.ops.registry import Kind, get
from graphc.viz.render import DotNotFoundWarning

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    clean["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [clean.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**clean, **env})  # fmt: skip


def test_importing_and_training_distributed_outside_mpiexec_never_imports_mpi_and_says_so():
    code = """
import sys
import numpy as np
import graphc as gc
from graphc import nn
assert "mpi4py" not in sys.modules
X = np.random.default_rng(0).normal(size=(20, 4)).astype("float32"); y = np.arange(20) % 2
m = nn.Model(nn.Sequential([nn.Dense(2)]), input_shape=(4,), backend="reference", distributed=True)
m.fit(X, y, epochs=1, batch_size=5, progress=False)
print(m.world, m.evaluate(X, y)["loss"] > 0, "mpi4py" in sys.modules)
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["<World", "rank", "0", "of", "1", "(no", "MPI)>", "True", "False"]
    assert proc.stderr.count("not started by an MPI launcher (mpiexec); training as a world of one") == 1


def test_under_a_launcher_without_mpi4py_the_error_says_what_to_install():
    proc = _python("import sys; sys.modules['mpi4py'] = None\nimport graphc.distributed as d; d.init()", PMI_SIZE="2")
    assert proc.returncode == 1
    assert ("DistributedError: graphc.distributed: this process was started by an MPI launcher (world size 2) "
            "but mpi4py cannot be imported") in proc.stderr  # fmt: skip
    assert "pip install 'graphc[mpi]'" in proc.stderr


def _data(n=24):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)).astype("float32"), rng.integers(0, 3, n)


def _model(distributed, **kw):
    net = nn.Sequential([nn.Dense(8, activation="relu"), nn.BatchNorm1D(), nn.Dense(3)])
    return nn.Model(net, input_shape=(5,), optimizer=nn.optim.Adam(1e-2, clip_norm=1.0), backend="numba",
                    distributed=distributed, **kw)  # fmt: skip


def test_a_world_of_one_trains_exactly_like_a_single_process():
    X, y = _data()
    a, b = _model(True), _model(False)
    for m in (a, b):
        m.fit(X, y, epochs=2, batch_size=5, progress=False)
    assert a.world.size == 1 and a.world.is_root
    for k, v in b.graph.values.items():
        np.testing.assert_allclose(a.graph.values[k], v, rtol=1e-6, atol=1e-7, err_msg=k)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-6)


def test_one_allreduce_of_one_flat_buffer_sits_between_the_gradients_and_the_optimizer():
    m = _model(True)
    g = m.graph
    reds = [n for n in g.nodes if n.op == "allreduce"]
    assert len(reds) == 1
    red = reds[0]
    # every gradient, both running averages, the loss and the weight, flattened into one buffer
    n_params = sum(v.size for k, v in g.values.items() if g.params[k].attrs["trainable"])
    assert red.shape == (n_params + 8 + 8 + 1 + 1,) and red.inputs[0].op == "concat"
    assert red.attrs["op"] == "sum" and red.attrs["inplace"]

    def depends(node, on):
        return any(n.id == on.id for n in g.live_nodes([node]))

    for name in g.trainable():
        assert depends(g.updates[name], red), name  # every update reads the reduced gradients
    for stat in ("sequential/batch_norm/running_mean", "sequential/batch_norm/running_var"):
        assert depends(g.updates[stat], red)  # running averages are reduced too
    assert depends(m.optimizer.grad_norm, red)  # clipping: the norm of the reduced (global) gradients
    assert depends(g.outputs[GLOBAL_LOSS], red) and not depends(g.outputs["train/loss"], red)
    assert not depends(g.outputs["eval/loss"], red)  # evaluation has no collective


def test_the_allreduce_op_is_declared_once_opaque_and_its_own_gradient():
    op = get("allreduce")
    assert op.kind is Kind.OPAQUE and op.differentiable and not op.reads_values
    g = gc.Graph("r")
    with g:
        x = g.input("x", (4,))
        r = gc.allreduce(x, "mean")
        gx = gc.grad(gc.sum(r * r), x)
    assert any(n.op == "allreduce" and n.attrs["op"] == "mean" for n in g.live_nodes([gx]) if n.id != r.id)
    xv = np.arange(4, dtype=np.float32)
    out = gc.run(g, {"x": xv}, outputs=[r, gx])
    np.testing.assert_array_equal(out[0], xv)  # a world of one: the identity
    np.testing.assert_array_equal(out[1], 2 * xv)
    with pytest.raises(gc.AttributeValueError, match="allreduce: op must be one of sum, mean, got 'max'"):
        gc.allreduce(x, "max")
    with g:
        i = g.input("i", (4,), "int64")
    with pytest.raises(gc.DTypeError, match=r"allreduce\(i64\[4\]\): needs a float input"):
        gc.allreduce(i)


def test_passes_never_fold_merge_or_fuse_an_allreduce():
    """Its value is the other ranks' data too (OpDef.external): two equal all-reduces stay two, one
    of a constant is not folded, and it is a kernel of its own."""
    from graphc.passes import optimize

    assert get("allreduce").external and not get("allreduce").pure
    with gc.Graph("r") as g:
        x = g.input("x", (4,))
        g.output("y", gc.allreduce(x) + gc.allreduce(x) + gc.allreduce(gc.constant(np.ones(4, "float32"))))
    opt = optimize(g)
    assert [n.op for n in opt.live_nodes()].count("allreduce") == 3
    step = gc.compile(g, "numba")
    alone = [k for k in step.kernels if "allreduce" in _ops(step, k)]
    assert len(alone) == 3 and all(len(k.node_ids) == 1 for k in alone)
    np.testing.assert_array_equal(step({"x": np.arange(4, dtype=np.float32)})["y"], 2 * np.arange(4) + 1)


def _ops(step, kernel):
    by_id = {n.id: n for n in step.graph.nodes}
    return [by_id[i].op for i in kernel.node_ids]


def test_the_distributed_training_step_can_be_drawn(tmp_path):
    m = _model(True)
    roots = [m.graph.outputs["train/loss"], *m.graph.updates.values()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DotNotFoundWarning)  # without `dot`: the Graphviz source only
        files = [Path(f) for f in gc.render(m.graph, tmp_path / "step.svg", roots=roots, part="backward")]
    assert "allreduce" in files[0].read_text()


def test_batches_shards_check_their_arguments():
    X = np.zeros((10, 1))
    with pytest.raises(InputError, match=r"shard must be \(rank, size\) with 0 <= rank < size, got \(2, 2\)"):
        Batches(X, batch_size=2, shard=(2, 2))
    with pytest.raises(InputError, match=r"the global batch \(batch_size 4 per rank x 3 ranks = 12 samples\) is "
                                         r"larger than the dataset \(10 samples\); use batch_size <= 3"):  # fmt: skip
        Batches(X, batch_size=4, shard=(0, 3))


def test_a_remainder_smaller_than_the_world_joins_the_batch_before():
    X = np.arange(13)
    parts = [Batches(X, batch_size=3, shuffle=False, shard=(r, 2)).shard_indices(0) for r in range(2)]
    assert [[list(p) for p in r] for r in parts] == [[[0, 1, 2], [6, 7, 8, 9]], [[3, 4, 5], [10, 11, 12]]]


def test_load_refuses_distributed_for_a_model_built_without_it(tmp_path):
    m = _model(False)
    m.save(tmp_path / "ckpt")
    with pytest.raises(GraphFileError, match="holds a model built without distributed=True"):
        nn.Model.load(tmp_path / "ckpt", distributed=True)
    assert not nn.Model.load(tmp_path / "ckpt").config["distributed"]


def test_distributed_error_is_a_graphc_error():
    assert issubclass(DistributedError, gc.GraphcError) and gc.DistributedError is DistributedError
