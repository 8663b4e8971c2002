"""Data-parallel training on two real MPI ranks (`mpiexec -n 2 python -m mpi4py`), checked
against one process: same parameters as one process on the full batch, disjoint and complete
shards, one checkpoint writer, and failures that end every rank with a clear message."""

import json
import re
import sys

import numpy as np
import pytest
from mpirun import PROGRAMS, ROOT, launch, needs_mpi, ok

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
    assert every[0]["predict_one"] == every[1]["predict_one"]
    np.testing.assert_allclose(np.array(every[0]["predict_one"]), single.predict(X[:1], logits=True), atol=2e-5)
    assert every[1]["evaluate_one"]["loss"] == pytest.approx(single.evaluate(X[:1], y[:1])["loss"], rel=1e-5)
    hist = every[0]["history"]["history"]
    for k, v in single.history.history.items():
        np.testing.assert_allclose(hist[k], v, rtol=1e-5, err_msg=k)
    if opt == "sgd":  # clipping is active (without it the values differ), so it used the global norm
        unclipped = common.model(opt, distributed=False, backend=backend, clip=False)
        unclipped.fit(X, y, epochs=3, batch_size=2 * common.BATCH, progress=False)
        w = "sequential/dense/w"
        assert np.abs(unclipped.graph.values[w] - single.graph.values[w]).max() > 1e-2


def test_checkpoint_and_curves_are_written_once_by_rank_0_and_the_checkpoint_resumes_on_one_process(tmp_path):
    ok(launch("train.py", "adam", "numba", tmp_path))
    assert (tmp_path / "writers.txt").read_text().splitlines() == ["rank 0", "curves: rank 0"]
    every = json.loads((tmp_path / "report.json").read_text())
    assert {r["saved"] for r in every} == {str(tmp_path / "ckpt")}  # both ranks get the path
    assert {r["curves"] for r in every} == {str(tmp_path / "curves.png")} and (tmp_path / "curves.png").exists()
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


def test_dropout_per_rank_batch_norm_kept_equal_and_early_stopping_decided_alike(tmp_path):
    """Dropout masks: the rank is folded into the seed. Batch-norm statistics are per rank, but
    the running averages are reduced with the gradients, so every value ends equal on both ranks;
    early stopping (on the sharded, reduced validation loss) stops both at the same epoch."""
    proc = launch("features.py", tmp_path)
    ok(proc)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["values"] == r1["values"]  # parameters, running averages and optimizer state, bit for bit
    assert r0["running_mean"] == r1["running_mean"] and any(v != 0 for v in r0["running_mean"])
    assert r0["mask_seeds"] != r1["mask_seeds"]
    assert [s[-1] for s in r0["mask_seeds"]] == [0] and [s[-1] for s in r1["mask_seeds"]] == [1]
    assert r0["history"] == r1["history"] and r0["epochs"] == r1["epochs"] < 30
    assert r0["stop_reason"] == r1["stop_reason"] and r0["stop_reason"].startswith("early stopping at epoch")
    assert r0["allreduces"] == r1["allreduces"] == 1  # one collective a step
    assert proc.stderr.count("epoch 1/30:   0%") == 1  # rank 0 alone draws the progress bar


@pytest.mark.parametrize(
    "case, message",
    [
        ("seed", r"DistributedError: distributed training on 2 ranks cannot start, the ranks differ: parameter "
                 r"values: rank 0 has \w{16}, rank 1 has \w{16}; every rank must run the same graphc, build the "
                 r"same model with the same seed"),
        ("data", r"DistributedError: distributed training on 2 ranks cannot start, the ranks differ: training data "
                 r"X: rank 0 has \w{16}, rank 1 has \w{16}; every rank"),
        ("model", r"DistributedError: distributed training on 2 ranks cannot start, the ranks differ: model \(graph\): "
                  r"rank 0 has \w{16}, rank 1 has \w{16}; parameter values: rank 0 has"),
        ("version", r"DistributedError: distributed training on 2 ranks cannot start, the ranks differ: graphc "
                    r"version: rank 0 has 0\.1\.0, rank 1 has 0\.0\.9; every rank"),
        ("nan", r"TrainingError: training stopped: the loss became inf on rank 1 of 2 at epoch 1, step 1 of 4"),
        ("write", r"(FileWriteError|DistributedError: rank 0 could not write '.*file/ckpt': FileWriteError): "),
    ],
)  # fmt: skip
def test_a_rank_that_differs_or_fails_stops_every_rank_with_the_same_clear_error(tmp_path, case, message):
    ok(launch("failures.py", case, tmp_path))
    for r in (0, 1):
        text = (tmp_path / f"rank{r}.txt").read_text()
        assert re.match(message, text), f"rank {r}: {text}"


@pytest.mark.parametrize("case, runner", [("raise", True), ("raise", False), ("kill", True)])
def test_a_rank_that_dies_ends_the_job_with_an_error_not_a_hang(tmp_path, case, runner):
    """An uncaught exception on rank 1 (python -m mpi4py calls MPI_Abort; without it, the hook
    graphc.distributed.init installs does), or rank 1 killed outright (mpiexec ends the others):
    the launch ends with a non-zero status, well within its timeout, and no rank finishes."""
    proc = launch("failures.py", case, tmp_path, timeout=120, runner=runner)
    assert proc.returncode != 0
    assert not list(tmp_path.glob("done*.npy"))
    # What a rank prints just before or as it aborts races mpiexec ending the job (mpi4py's
    # runner aborts straight after printing the traceback); graphc's own hook pauses first, so
    # there the whole traceback arrives.
    if case == "raise" and not runner:
        assert "RuntimeError: rank 1 fails on purpose" in proc.stderr
    elif case == "kill":
        assert "Killed" in proc.stdout + proc.stderr or proc.returncode in (9, -9, 137)


def test_the_allreduce_op_sums_and_averages_over_the_ranks_and_its_gradient_is_an_allreduce(tmp_path):
    ok(launch("collective.py", tmp_path))
    for r in (0, 1):
        got = json.loads((tmp_path / f"rank{r}.json").read_text())
        for backend in ("reference", "numba"):
            s, m, gx, x = got[backend]
            assert s == [3.0, 6.0, 9.0] and m == [1.5, 3.0, 4.5], backend  # x is 1,2,3 on rank 0 and twice that on 1
            assert gx == [3.0, 30.0, 300.0], backend  # c summed over the ranks
            assert x == [float(v) * (r + 1) for v in (1, 2, 3)]  # a fed array is never reduced in place


@pytest.mark.slow
def test_graphc_demo_under_mpiexec_trains_on_two_ranks_and_rank_0_alone_prints_and_writes(tmp_path):
    out = tmp_path / "demo"
    proc = launch("graphc", "demo", "--out", out, "--epochs", "2", "--quiet", module=True)
    ok(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("2 epochs, 2 ranks x 32 samples a step")
    assert sum(line.startswith("test accuracy: ") for line in lines) == 1  # printed once, by rank 0
    assert float(lines[-1].split()[-1]) >= 0.8
    assert (out / "curves.png").exists()
    drawing = next(out.glob("backward.*"))
    assert "allreduce" in drawing.read_text()  # the all-reduce is drawn in the training step


def test_the_distributed_example_trains_on_two_ranks(tmp_path):
    proc = launch(str(ROOT / "examples" / "distributed_digits.py"), "--epochs", "8", "--quiet", "--seed", "0",
                  "--save", tmp_path / "ckpt")  # fmt: skip
    ok(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == "2 rank(s) x 16 samples = global batch 32, 45 steps an epoch"
    assert sum(line.startswith("test accuracy: ") for line in lines) == 1
    assert float(lines[-1].split()[-1]) >= 0.93
    assert nn.Model.load(tmp_path / "ckpt", distributed=False).epoch == 8


def test_a_checkpoint_of_one_process_resumes_on_two_ranks(tmp_path):
    """distributed=True on one process (a world of one) for 3 epochs at batch 16, saved, then 2
    more epochs on 2 ranks at 8 each: the same as one process running 5 epochs straight."""
    X, y = common.data()
    model = common.model("adam", distributed=True)
    model.fit(X, y, epochs=3, batch_size=2 * common.BATCH, progress=False)
    model.save(tmp_path / "ckpt")
    ok(launch("resume.py", tmp_path / "ckpt", 5, tmp_path))
    values = common.load_values(tmp_path / "values.npz")
    straight = _single_process("adam", "numba", epochs=5)
    for k, v in straight.graph.values.items():
        np.testing.assert_allclose(values[k], v, rtol=2e-5, atol=2e-6, err_msg=k)
