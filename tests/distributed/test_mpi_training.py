"""Data-parallel training on two real MPI ranks (`mpiexec -n 2 python -m mpi4py`), checked
against one process: same parameters as one process on the full batch, disjoint and complete
shards, one checkpoint writer, and failures that end every rank with a clear message."""

import json
import sys

import numpy as np
import pytest
from mpirun import PROGRAMS, launch, needs_mpi, ok

sys.path.insert(0, str(PROGRAMS))
import common  # noqa: E402

from graphc import nn  # noqa: E402

pytestmark = needs_mpi


def _single_process(opt, backend, epochs=3):
    X, y = common.data()
    model = common.model(opt, distributed=False, backend=backend)
    model.fit(X, y, epochs=epochs, batch_size=2 * common.BATCH, progress=False)
    return model


@pytest.mark.parametrize("opt, backend", [("sgd", "numba"), ("adam", "numba"), ("adam", "reference")])
def test_two_ranks_on_half_batches_match_one_process_on_the_full_batch(tmp_path, opt, backend):
    """SGD with momentum and global-norm clipping, and Adam: after 12 steps (61 samples, global
    batch 16, the last one split 7 / 6) every value of the two-rank run is the single process's
    within float32 rounding; evaluate and predict (sharded, gathered) agree too."""
    ok(launch("train.py", opt, backend, tmp_path))
    every = json.loads((tmp_path / "report.json").read_text())
    assert [r["rank"] for r in every] == [0, 1] and {r["size"] for r in every} == {2}
    assert every[0]["values"] == every[1]["values"]  # identical parameters on both ranks, bit for bit
    assert every[0]["predict"] == every[1]["predict"]  # every rank gets all predictions, in order
    single = _single_process(opt, backend)
    values = common.load_values(tmp_path / "values.npz")
    assert values.keys() == single.graph.values.keys()
    for k, v in single.graph.values.items():
        np.testing.assert_allclose(values[k], v, rtol=2e-5, atol=2e-6, err_msg=k)
    X, y = common.data()
    assert every[0]["step"] == single.step == 12
    ref_eval = single.evaluate(X, y)
    for k, v in every[0]["evaluate"].items():
        assert v == pytest.approx(ref_eval[k], rel=1e-5), k
    np.testing.assert_allclose(np.array(every[0]["predict"]), single.predict(X), atol=2e-5)
    hist = every[0]["history"]["history"]
    for k, v in single.history.history.items():
        np.testing.assert_allclose(hist[k], v, rtol=1e-5, err_msg=k)
    if opt == "sgd":  # clipping is active (without it the values differ), so it used the global norm
        unclipped = common.model(opt, distributed=False, backend=backend, clip=False)
        unclipped.fit(X, y, epochs=3, batch_size=2 * common.BATCH, progress=False)
        w = "sequential/dense/w"
        assert np.abs(unclipped.graph.values[w] - single.graph.values[w]).max() > 1e-2


def test_checkpoint_is_written_once_by_rank_0_and_resumes_on_one_process(tmp_path):
    ok(launch("train.py", "adam", "numba", tmp_path))
    assert (tmp_path / "writers.txt").read_text().splitlines() == ["rank 0"]
    every = json.loads((tmp_path / "report.json").read_text())
    assert {r["saved"] for r in every} == {str(tmp_path / "ckpt")}  # both ranks get the path
    # Saved by 2 ranks after 3 epochs, resumed by 1 process at the same global batch (16) for 2 more:
    # the same as one process that ran 5 epochs straight through.
    X, y = common.data()
    resumed = nn.Model.load(tmp_path / "ckpt", distributed=False)
    assert resumed.epoch == 3 and resumed.step == 12
    resumed.fit(X, y, epochs=5, batch_size=2 * common.BATCH, progress=False, initial_epoch=3)
    straight = _single_process("adam", "numba", epochs=5)
    for k, v in straight.graph.values.items():
        np.testing.assert_allclose(resumed.graph.values[k], v, rtol=2e-5, atol=2e-6, err_msg=k)


def test_shards_are_disjoint_and_cover_each_epoch(tmp_path):
    ok(launch("shards.py", tmp_path, n=3))
    every = json.loads((tmp_path / "shards.json").read_text())
    assert [c["n"] for c in every] == [48, 50, 37, 13] and all(len(c["ranks"]) == 3 for c in every)
    for case in every:
        n, ranks = case["n"], case["ranks"]
        for epoch in range(2):
            steps = [r[epoch] for r in ranks]
            assert len({len(s) for s in steps}) == 1  # the same number of steps on every rank
            seen = [i for r in steps for batch in r for i in batch]
            assert sorted(seen) == list(range(n))  # disjoint (no repeats) and complete
            for parts in zip(*steps):  # each rank has a part of every step, within one sample of the others
                sizes = [len(p) for p in parts]
                assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
