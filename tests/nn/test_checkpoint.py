"""Checkpoints: bit-exact round trip, resume equivalence, crash mid-save, corrupt and mismatched files."""

import errno
import json

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.datasets import load_digits
from graphc.errors import FileWriteError, GraphFileError
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
