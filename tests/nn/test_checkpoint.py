"""Checkpoints: bit-exact round trip, resume equivalence, crash mid-save, corrupt and mismatched files."""

import errno
import json
import os
import re
import time

import numpy as np
import pytest
from crashing import run_killed_at

import graphc as gc
from graphc import nn
from graphc.datasets import load_digits
from graphc.errors import FileWriteError, GraphFileError
from graphc.io import atomic
from graphc.io import checkpoint as ckpt_mod
from graphc.io.checkpoint import load_checkpoint, save_checkpoint

B = "reference"


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(flat=True)
    return X[:240], y[:240], X[240:400], y[240:400]


def make(hidden=16, extra=False, seed=0):
    layers = [nn.Dense(hidden, activation="relu"), nn.Dropout(0.3)]
    if extra:
        layers.append(nn.Dense(hidden, activation="relu"))
    net = nn.Sequential([*layers, nn.Dense(10)], name="mlp")
    return nn.Model(net, input_shape=(64,), optimizer=nn.optim.Adam(lr=3e-3), backend=B, seed=seed)


def values(model):
    return {k: v.copy() for k, v in model.graph.values.items()}


def assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_round_trip_is_bit_exact(data, tmp_path):
    X, y, Xv, yv = data
    m = make()
    m.fit(X, y, epochs=2, batch_size=40, validation_data=(Xv, yv), progress=False)
    m.save(tmp_path / "ck")
    loaded = nn.Model.load(tmp_path / "ck")
    assert_same(values(m), values(loaded))
    assert "adam/step" in loaded.graph.values and float(loaded.graph.values["adam/step"]) == 12.0
    assert any(k.startswith("adam/m/") for k in loaded.graph.values)  # optimizer state travels too
    assert loaded.epoch == 2 and loaded.step == 12 and loaded.backend == B
    assert loaded.history.history == m.history.history and loaded.history.epochs == [1, 2]
    np.testing.assert_array_equal(loaded.predict(Xv), m.predict(Xv))
    assert loaded.evaluate(Xv, yv) == m.evaluate(Xv, yv)
    # The saved graph is the whole training step: same inputs, outputs and updates.
    assert sorted(loaded.graph.outputs) == sorted(m.graph.outputs)
    assert sorted(loaded.graph.updates) == sorted(m.graph.updates)


@pytest.mark.parametrize("how", ["load", "load_weights"])
def test_resume_matches_uninterrupted_training(data, tmp_path, how):
    X, y, Xv, yv = data
    straight = make()
    straight.fit(X, y, epochs=4, batch_size=40, validation_data=(Xv, yv), progress=False)

    first = make()
    first.fit(X, y, epochs=2, batch_size=40, validation_data=(Xv, yv), progress=False)
    first.save(tmp_path / "ck")
    del first
    if how == "load":
        resumed = nn.Model.load(tmp_path / "ck")
    else:  # a freshly built model (new process), filled from the checkpoint
        resumed = make().load_weights(tmp_path / "ck")
    resumed.fit(X, y, epochs=2, batch_size=40, validation_data=(Xv, yv), progress=False)
    assert_same(values(straight), values(resumed))  # parameters, Adam moments and step
    assert resumed.history.history == straight.history.history
    assert resumed.step == straight.step == 24


def test_crash_mid_save_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    X, y, _, _ = data
    m = make()
    m.fit(X, y, epochs=1, batch_size=40, progress=False)
    m.save(tmp_path / "ck")
    saved = values(m)
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    m.fit(X, y, epochs=1, batch_size=40, progress=False)

    # 1) The graph write fails after the new values file is already on disk.
    def broken_write_graph(encoded, path, tag):
        path.write_bytes(b'{"format": "graphc.gra')  # half a file, then the "disk" fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "write_graph", broken_write_graph)
    with pytest.raises(FileWriteError, match=r"cannot write checkpoint '.*ck': No space left on device$") as info:
        m.save(tmp_path / "ck")
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == files  # the half-written files are gone
    assert_same(saved, load_checkpoint(tmp_path / "ck").values)
    monkeypatch.undo()

    # 2) A hard crash while replacing the manifest: no cleanup runs at all (unlink does nothing).
    real_write = ckpt_mod.atomic_write

    def crash_on_manifest(path, data, tag):
        if path.name == ckpt_mod.MANIFEST:
            raise KeyboardInterrupt("killed")
        real_write(path, data, tag)

    monkeypatch.setattr(ckpt_mod, "atomic_write", crash_on_manifest)
    monkeypatch.setattr(type(tmp_path), "unlink", lambda self, missing_ok=False: None)
    with pytest.raises(KeyboardInterrupt):
        m.save(tmp_path / "ck")
    monkeypatch.undo()
    assert len(list((tmp_path / "ck").iterdir())) > len(files)  # stray new files, but...
    restored = nn.Model.load(tmp_path / "ck")  # ...the manifest still names the old, intact ones
    assert_same(saved, values(restored))
    # The next good save commits and removes the stray files.
    m.save(tmp_path / "ck")
    assert len(list((tmp_path / "ck").iterdir())) == len(files)
    assert_same(values(m), load_checkpoint(tmp_path / "ck").values)


def test_corrupt_checkpoints_raise_graph_file_errors(data, tmp_path):
    X, y, _, _ = data
    m = make()
    m.save(tmp_path / "ck")
    manifest = tmp_path / "ck" / "checkpoint.json"
    doc = json.loads(manifest.read_text())
    vfile = tmp_path / "ck" / doc["values_file"]
    good = vfile.read_bytes()

    vfile.write_bytes(good[: len(good) // 2])
    with pytest.raises(GraphFileError, match=r"values file 'values-[\w-]+\.npz' is corrupt \(checksum differs\)"):
        nn.Model.load(tmp_path / "ck")
    vfile.unlink()
    with pytest.raises(GraphFileError, match="is missing or unreadable"):
        nn.Model.load(tmp_path / "ck")
    vfile.write_bytes(good)

    manifest.write_text(manifest.read_text()[:100])
    with pytest.raises(GraphFileError, match="corrupt checkpoint manifest \\(invalid JSON"):
        nn.Model.load(tmp_path / "ck")
    manifest.write_text(json.dumps({**doc, "format": "something.else"}))
    with pytest.raises(GraphFileError, match="not a graphc checkpoint"):
        nn.Model.load(tmp_path / "ck")
    manifest.write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(GraphFileError, match="version 99 is not supported"):
        nn.Model.load(tmp_path / "ck")
    with pytest.raises(GraphFileError, match="cannot read checkpoint"):
        nn.Model.load(tmp_path / "nowhere")
    manifest.write_text(json.dumps(doc))
    assert_same(values(m), values(nn.Model.load(tmp_path / "ck")))


def test_checkpoint_that_does_not_match_the_model(tmp_path):
    make(hidden=16).save(tmp_path / "ck")
    with pytest.raises(GraphFileError) as info:
        make(hidden=32).load_weights(tmp_path / "ck")
    msg = str(info.value)
    assert "does not match graph 'model'" in msg
    assert "'mlp/dense/w' is float32[64, 16] in the checkpoint but float32[64, 32] in the model" in msg
    assert "'adam/m/mlp/dense/w' is float32[64, 16]" in msg  # optimizer state is checked too
    with pytest.raises(GraphFileError, match=r"missing from the checkpoint: .*'mlp/dense_2/w'"):
        make(hidden=16, extra=True).load_weights(tmp_path / "ck")
    make(hidden=16, extra=True).save(tmp_path / "big")
    with pytest.raises(GraphFileError, match=r"in the checkpoint but not in the model: .*'mlp/dense_2/b'"):
        make(hidden=16).load_weights(tmp_path / "big")
    # A failed load leaves the model's values untouched.
    m = make(hidden=16, seed=5)
    before = values(m)
    with pytest.raises(GraphFileError):
        m.load_weights(tmp_path / "big")
    assert_same(before, values(m))


def test_plain_graph_checkpoint(tmp_path):
    with gc.Graph("lin", seed=1) as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 2))
        g.output("y", x @ w)
    path = save_checkpoint(tmp_path / "g", g, meta={"note": "hello"})
    ck = load_checkpoint(path)
    assert ck.meta == {"note": "hello"}
    np.testing.assert_array_equal(ck.values["w"], g.values["w"])
    g2 = ck.graph()
    xs = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(gc.run(g2, {"x": xs}, outputs="y"), gc.run(g, {"x": xs}, outputs="y"))
    save_checkpoint(tmp_path / "v", g, include_graph=False)
    with pytest.raises(GraphFileError, match="holds no graph"):
        load_checkpoint(tmp_path / "v").graph()
    with pytest.raises(GraphFileError, match="was not saved by Model.save"):
        nn.Model.load(tmp_path / "g")
    (tmp_path / "file").write_text("x")
    with pytest.raises(GraphFileError, match="exists and is not a directory"):
        save_checkpoint(tmp_path / "file", g)


# -- kills, leftovers, write failures, strict manifests -------------------------------------


def plain(seed):
    with gc.Graph("lin", seed=seed) as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 2))
        g.update("w", w * 0.5)
        g.output("y", x @ w)
    return g


def checkpoint_files(path):
    doc = json.loads((path / ckpt_mod.MANIFEST).read_text())
    graph_doc = json.loads((path / doc["graph_file"]).read_text())
    return sorted([ckpt_mod.MANIFEST, doc["values_file"], doc["graph_file"], graph_doc["arrays"]])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_checkpoint_save_killed_at_any_step_leaves_the_old_or_the_new(tmp_path):
    old, new = plain(1), plain(2)
    assert not np.array_equal(old.values["w"], new.values["w"])
    path = tmp_path / "ck"
    save_checkpoint(path, old, meta={"n": 1})
    outcomes = []
    for step in range(1, 200):
        killed = run_killed_at(step, lambda: save_checkpoint(path, new, meta={"n": 2}), tmp_path)
        ck = load_checkpoint(path)  # whole, whichever it is
        got = ck.graph()
        want = new if ck.meta == {"n": 2} else old
        assert ck.meta in ({"n": 1}, {"n": 2}) and got.text() == want.text(), step
        np.testing.assert_array_equal(ck.values["w"], want.values["w"])
        np.testing.assert_array_equal(got.values["w"], want.values["w"])
        outcomes.append(ck.meta["n"])
        if not killed:
            break
        save_checkpoint(path, old, meta={"n": 1})  # the next save removes what the killed one left
        assert sorted(p.name for p in path.iterdir()) == checkpoint_files(path), step
    assert outcomes[-1] == 2 and 1 in outcomes and outcomes.count(2) >= 2 and step > 20
    assert sorted(p.name for p in path.iterdir()) == checkpoint_files(path)


def test_leftovers_of_older_graphc_saves_are_removed_by_age(tmp_path):
    path = save_checkpoint(tmp_path / "ck", plain(1))
    day_ago = time.time() - atomic.STALE_AFTER - 60
    names = {"values-0123456789ab.npz": True, "graph-0123456789ab.npz": True, ".checkpoint.json.ab_cd123.tmp": True,
             ".graph-0123456789ab.npz.abcdefgh.tmp": True, "values-fresh.npz": False, "notes.txt": False}  # fmt: skip
    for name in names:
        (path / name).write_bytes(b"x")
        os.utime(path / name, (day_ago, day_ago))
    (path / "graph-ba9876543210.json").write_bytes(b"x")  # untagged and recent: it could be in use
    save_checkpoint(path, plain(2))
    kept = {"graph-ba9876543210.json", *(n for n, gone in names.items() if not gone)}
    assert sorted(p.name for p in path.iterdir()) == sorted([*checkpoint_files(path), *kept])


def test_an_older_graphcs_checkpoint_is_replaced_cleanly(tmp_path):
    """Files named as before writer tags (values-<12 hex>.npz, graph-<12 hex>.json/.npz) load, and
    the next save removes them."""
    path = save_checkpoint(tmp_path / "ck", plain(1), meta={"n": 1})
    doc = json.loads((path / ckpt_mod.MANIFEST).read_text())
    graph_doc = json.loads((path / doc["graph_file"]).read_text())
    os.replace(path / graph_doc["arrays"], path / "graph-0123456789ab.npz")
    (path / "graph-0123456789ab.json").write_text(json.dumps({**graph_doc, "arrays": "graph-0123456789ab.npz"}))
    (path / doc["graph_file"]).unlink()
    os.replace(path / doc["values_file"], path / "values-0123456789ab.npz")
    doc.update(values_file="values-0123456789ab.npz", graph_file="graph-0123456789ab.json")
    (path / ckpt_mod.MANIFEST).write_text(json.dumps(doc))
    assert load_checkpoint(path).graph().text() == plain(1).text()
    save_checkpoint(path, plain(2), meta={"n": 2})
    assert sorted(p.name for p in path.iterdir()) == checkpoint_files(path)
    assert not any("0123456789ab" in name for name in checkpoint_files(path))


def test_saving_a_checkpoint_into_missing_folders_creates_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = make()
    m.save("runs/first/ck")
    assert_same(values(m), values(nn.Model.load("runs/first/ck")))


def test_saving_a_checkpoint_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileWriteError) as info:
        make().save(tmp_path / "f" / "ck")
    target, blocker = str(tmp_path / "f" / "ck"), str(tmp_path / "f")
    assert str(info.value) == f"cannot write checkpoint {target!r}: {blocker!r} is a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize(
    "patch, code",
    [("open", errno.EACCES), ("open", errno.EROFS), ("fsync", errno.ENOSPC)],
    ids=["permission", "read-only", "full"],
)
def test_a_checkpoint_that_cannot_be_written(tmp_path, monkeypatch, patch, code):
    m = make()
    m.save(tmp_path / "ck")
    before = {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()}
    real = getattr(os, patch)

    def failing(*args, **kwargs):
        if patch == "fsync" or args[1] & os.O_CREAT:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, patch, failing)
    with pytest.raises(FileWriteError) as info:
        make(seed=3).save(tmp_path / "ck")
    monkeypatch.undo()
    assert str(info.value) == f"cannot write checkpoint {str(tmp_path / 'ck')!r}: {os.strerror(code)}"
    assert info.value.errno == code and isinstance(info.value, GraphFileError)
    assert {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()} == before  # nothing left over
    assert_same(values(m), values(nn.Model.load(tmp_path / "ck")))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epoch", "x", 'meta.training.epoch is "x", expected a non-negative integer'),
        ("epoch", True, "meta.training.epoch is true, expected a non-negative integer"),
        ("step", -1, "meta.training.step is -1, expected a non-negative integer"),
        ("history", [], "meta.training.history is [], expected an object"),
        ("history", {"epochs": ["1"]}, 'meta.training.history.epochs is ["1"], expected a list of integers'),
        ("history", {"history": {"loss": ["a"]}}, "meta.training.history.history is"),
        ("history", {"best_epoch": 1.5}, "meta.training.history.best_epoch is 1.5, expected an integer or null"),
    ],
)
def test_training_position_fields_have_exact_types(tmp_path, field, value, message):
    make().save(tmp_path / "ck")
    manifest = tmp_path / "ck" / "checkpoint.json"
    doc = json.loads(manifest.read_text())
    doc["meta"]["training"][field] = value
    manifest.write_text(json.dumps(doc))
    for load in (nn.Model.load, make().load_weights):
        with pytest.raises(GraphFileError) as info:
            load(tmp_path / "ck")
        assert str(info.value).startswith(f"{manifest}: corrupt checkpoint manifest ({message}")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(version=True), "version is true, expected the integer 1"),
        (lambda d: d.update(graph_file=5), "graph_file is 5, expected a string or null"),
        (lambda d: d["values"].update(w={"key": "v0", "shape": 3, "dtype": "float32"}), "values is"),
        (lambda d: d.pop("values_sha256"), "values_sha256 is missing"),
    ],
)
def test_manifest_fields_have_exact_types(tmp_path, change, message):
    path = save_checkpoint(tmp_path / "ck", plain(1))
    manifest = path / "checkpoint.json"
    doc = json.loads(manifest.read_text())
    change(doc)
    manifest.write_text(json.dumps(doc))
    with pytest.raises(GraphFileError, match=re.escape(f"corrupt checkpoint manifest ({message}")):
        load_checkpoint(path)


@pytest.mark.parametrize("include_graph", [True, False])
def test_non_finite_values_are_not_saved(tmp_path, include_graph):
    g = plain(1)
    g.values["w"][0, 0] = np.inf
    with pytest.raises(GraphFileError, match="graph 'lin': cannot save value 'w' in a checkpoint: it contains inf"):
        save_checkpoint(tmp_path / "ck", g, include_graph=include_graph)
    assert not (tmp_path / "ck").exists()


def test_non_finite_values_are_not_loaded(tmp_path):
    path = save_checkpoint(tmp_path / "ck", plain(1))
    doc = json.loads((path / ckpt_mod.MANIFEST).read_text())
    w = plain(1).values["w"].copy()
    w[1, 1] = np.nan
    np.savez(path / doc["values_file"], v0=w)
    doc["values_sha256"] = ckpt_mod.hashlib.sha256((path / doc["values_file"]).read_bytes()).hexdigest()
    (path / ckpt_mod.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(GraphFileError, match=r"checkpoint '.*ck': value 'w' contains NaN"):
        load_checkpoint(path)
