"""Graph files: JSON + .npz round trip preserves everything; corrupt files give GraphFileError."""

import json
import os

import numpy as np
import pytest

import graphc as gc
from graphc.io import graph_file, graph_reader
from graphc.io.graph_file import arrays_file, load_graph, save_graph


def training_graph():
    """Scopes, symbolic dims, int inputs, array constants, gradients and SGD updates."""
    with gc.Graph("train", seed=7) as g:
        x = g.input("x", ("batch", 3))
        k = g.input("k", ("batch",), "int64")
        with g.scope("l1"):
            w = g.param("w", (3, 4))
            b = g.param("b", (4,), init="normal")
            h = gc.tanh(x @ w + b)
        with g.scope("l2"):
            w2 = g.param("w", (4, 2), init="he_normal", dtype="float32")
            o = h @ w2 * gc.constant(np.array([1.0, -2.0], np.float32))
        steps = g.variable("steps", (), dtype="int64")
        t = k.astype("float32")
        loss = gc.mean((gc.sum(o, axis=1) - t) ** 2)
        g.output("loss", loss)
        g.output("h", h)
    grads = gc.gradients(loss)
    for name, gr in grads.items():
        g.update(name, g.params[name] - 0.1 * gr)
    g.update("steps", steps + 1)
    g.output("g_w", grads["l1/w"])
    return g


FEEDS = {"x": np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3), "k": np.array([0, 1, 2, 1, 0])}


def describe(n):
    return (n.id, n.op, [x.id for x in n.inputs], n.attrs.key(), n.shape, n.dtype, n.name, n.scope,
            n.location, n.phase, n.grad_of)  # fmt: skip


def test_round_trip_preserves_text_nodes_values_and_results(tmp_path):
    g = training_graph()
    path = tmp_path / "train.json"
    save_graph(g, path)
    npz = arrays_file(path)
    assert npz.parent == tmp_path and npz.name.startswith("train.json.") and npz.name.endswith(".npz") and npz.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json", npz.name]
    h = load_graph(path)
    assert h.text() == g.text()
    assert h.text(backward=True) == g.text(backward=True)
    assert (h.name, h.seed) == ("train", 7)
    assert [describe(n) for n in h.nodes] == [describe(n) for n in g.nodes]
    assert any(n.is_backward for n in h.nodes)
    assert list(h.inputs) == ["x", "k"] and list(h.params) == list(g.params)
    assert {k: v.attrs["trainable"] for k, v in h.params.items()} == {**dict.fromkeys(g.trainable(), True),
                                                                      "steps": False}  # fmt: skip
    assert h.params["l1/b"].attrs["init"] == "normal"
    assert {k: v.id for k, v in h.updates.items()} == {k: v.id for k, v in g.updates.items()}
    for name in g.params:
        np.testing.assert_array_equal(h.values[name], g.values[name])
        assert h.values[name].dtype == g.values[name].dtype and h.values[name].flags.writeable
    # Two training steps on each: identical outputs and identical updated values.
    for _ in range(2):
        a, b = gc.run(g, FEEDS), gc.run(h, FEEDS)
        assert a.keys() == b.keys() == {"loss", "h", "g_w"}
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for name in g.params:
        np.testing.assert_array_equal(h.values[name], g.values[name])
    assert int(h.values["steps"]) == 2
    assert gc.load_graph(path).text() == g.text() and gc.Graph.load(path).text() == g.text()


def test_save_method_other_suffix_and_overwrite(tmp_path):
    g = training_graph()
    path = tmp_path / "model.graph"
    g.save(path)
    first = arrays_file(path)
    assert first.name.startswith("model.graph.") and first.exists()
    g.save(path)  # overwriting is fine: the old arrays file goes, and no temporary file is left
    second = arrays_file(path)
    assert second != first and sorted(p.name for p in tmp_path.iterdir()) == ["model.graph", second.name]
    doc = json.loads(path.read_text())
    assert doc["format"] == "graphc.graph" and doc["version"] == graph_file.VERSION
    with np.load(second, allow_pickle=False) as z:
        assert len(z.files) == 5  # four parameters and one array constant


def test_attribute_values_round_trip():
    enc = graph_file._Encoder()
    value = {"t": (1, (2.5, "a"), ()), "s": (slice(1, None, -1), Ellipsis, None), "f": (float("nan"), -float("inf")),
             "a": np.arange(6).reshape(2, 3), "z": np.float32(1.5), "b": True}  # fmt: skip
    encoded = json.loads(json.dumps(enc.value(value), allow_nan=False))
    back = graph_reader._Decoder(enc.arrays).value(encoded)
    assert back["t"] == (1, (2.5, "a"), ()) and back["s"] == (slice(1, None, -1), Ellipsis, None)
    assert np.isnan(back["f"][0]) and back["f"][1] == -float("inf")
    np.testing.assert_array_equal(back["a"], value["a"])
    assert back["z"] == 1.5 and back["b"] is True


def test_nonfinite_scalar_constant_round_trips(tmp_path):
    with gc.Graph("c") as g:
        x = g.input("x", (2,))
        g.output("y", gc.maximum(x, float("-inf")) + gc.constant(np.array(3, np.int64)).astype("float32"))
    save_graph(g, tmp_path / "c.json")
    h = load_graph(tmp_path / "c.json")
    assert h.text() == g.text() and "-inf" in h.text()
    np.testing.assert_array_equal(gc.run(h, {"x": [1.0, 2.0]})["y"], [4, 5])


def test_object_arrays_are_refused(tmp_path):
    g = gc.Graph("o")
    with g:
        g.param("p", (1,))
    g.values["p"] = np.array([object()])
    with pytest.raises(gc.GraphFileError, match="dtype object"):
        save_graph(g, tmp_path / "o.json")
    assert not list(tmp_path.iterdir())


# -- corrupt files ---------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "g.json"
    save_graph(training_graph(), path)
    return path


def rewrite(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def expect(path, *fragments):
    with pytest.raises(gc.GraphFileError) as e:
        load_graph(path)
    msg = str(e.value)
    assert str(path) in msg or path.name in msg
    for f in fragments:
        assert f in msg, msg
    assert e.value.__cause__ is None  # no chained deep traceback
    return msg


def test_bad_json(saved):
    saved.write_text("{not json")
    expect(saved, "invalid JSON")


def test_truncated(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    expect(saved, "truncated or corrupt")


def test_not_a_file(tmp_path):
    expect(tmp_path / "nothing.json", "cannot read")


def test_wrong_format_marker(saved):
    rewrite(saved, lambda d: d.update(format="something.else"))
    expect(saved, "not a graphc graph file", "something.else")
    saved.write_text("[1, 2]")
    expect(saved, "not a graphc graph file")


def test_other_version(saved):
    rewrite(saved, lambda d: d.update(version=99))
    expect(saved, "version 99", "reads versions 1, 2")


@pytest.mark.parametrize("key", ["nodes", "params", "seed", "arrays_sha256"])
def test_missing_top_level_key(saved, key):
    rewrite(saved, lambda d: d.pop(key))
    expect(saved, "corrupt graph file", key)


def first(saved, op):
    return next(i for i, n in enumerate(json.loads(saved.read_text())["nodes"]) if n["op"] == op)


def test_missing_node_key(saved):
    rewrite(saved, lambda d: d["nodes"][5].pop("dtype"))
    expect(saved, "corrupt graph file: nodes[5].dtype is missing")


def test_unknown_op(saved):
    i = first(saved, "tanh")
    rewrite(saved, lambda d: d["nodes"][i].update(op="frobnicate"))
    expect(saved, f"node {i}", "unknown op 'frobnicate'")


def test_recorded_type_disagrees_with_inference(saved):
    i = first(saved, "tanh")
    rewrite(saved, lambda d: d["nodes"][i].update(shape=["batch", 5]))
    expect(saved, f"node {i} (tanh)", "recorded type float32['batch', 5] but its inputs give float32['batch', 4]")


def test_attribute_breaks_inference(saved):
    i = first(saved, "mean")
    rewrite(saved, lambda d: d["nodes"][i]["attrs"].update(axes={"$tuple": [7]}))
    msg = expect(saved, f"node {i} (mean)")
    assert "does not type-check" in msg or "recorded type float32[] but its inputs give" in msg


def test_input_from_a_later_node(saved):
    i = first(saved, "tanh")
    rewrite(saved, lambda d: d["nodes"][i].update(inputs=[i + 1]))
    expect(saved, f"node {i}", "not an earlier node")


def test_missing_npz(saved):
    arrays_file(saved).unlink()
    expect(saved, "g.json.", ".npz' is missing")


def test_mismatched_npz(saved, tmp_path):
    other = tmp_path / "other.json"
    with gc.Graph("other") as g:
        g.param("w", (3, 4))
    save_graph(g, other)
    os.replace(arrays_file(other), arrays_file(saved))
    expect(saved, "does not match")


def test_corrupt_npz_with_matching_checksum(saved):
    npz = arrays_file(saved)
    npz.write_bytes(b"garbage")
    rewrite(saved, lambda d: d.update(arrays_sha256=graph_file.hashlib.sha256(b"garbage").hexdigest()))
    expect(saved, "corrupt")


def test_array_shape_differs_from_record(saved):
    rewrite(saved, lambda d: d["params"]["l1/w"]["value"]["$array"].update(shape=[4, 3]))
    expect(saved, "float32[3, 4] in the arrays file")


def test_crash_while_saving_leaves_old_files_intact(saved, monkeypatch):
    before = {p.name: p.read_bytes() for p in saved.parent.iterdir()}
    g = training_graph()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(graph_file.os, "replace", failing_replace)
    g.name = "changed"
    with pytest.raises(OSError, match="disk full"):
        save_graph(g, saved)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in saved.parent.iterdir()} == before  # no temp files either
    assert load_graph(saved).name == "train"


# -- strict fields (nothing that would fail later, or be silently wrong, loads) ----------------


def test_param_node_missing_from_params(saved):
    rewrite(saved, lambda d: d["params"].pop("l2/w") and d["updates"].pop("l2/w"))
    expect(saved, "corrupt graph file: node 7 is param 'l2/w', which params lacks")


def test_input_node_missing_from_inputs(saved):
    rewrite(saved, lambda d: d["inputs"].pop("k"))
    expect(saved, "corrupt graph file: node 1 is input 'k', which inputs lacks")


def with_value(saved, name, value):
    """Put `value` into the arrays file for parameter `name` (checksum updated to match)."""
    doc = json.loads(saved.read_text())
    npz = saved.with_name(doc["arrays"])
    with np.load(npz) as z:
        arrays = dict(z)
    arrays[doc["params"][name]["value"]["$array"]["npz"]] = value
    np.savez(npz, **arrays)
    rewrite(saved, lambda d: d.update(arrays_sha256=graph_file.hashlib.sha256(npz.read_bytes()).hexdigest()))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_parameter_values_are_refused(saved, bad):
    value = np.ones((3, 4), np.float32)
    value[1, 2] = bad
    with_value(saved, "l1/w", value)
    expect(saved, f"parameter 'l1/w': stored value contains {'NaN' if np.isnan(bad) else 'inf'}")


def test_saving_non_finite_parameter_values_is_refused(tmp_path):
    g = training_graph()
    g.values["l1/b"][0] = np.nan
    with pytest.raises(gc.GraphFileError, match="graph 'train': cannot save parameter 'l1/b': its value contains NaN"):
        save_graph(g, tmp_path / "g.json")
    assert not list(tmp_path.iterdir())


def put(doc, keys, value):
    for k in keys[:-1]:
        doc = doc[k]
    doc[keys[-1]] = value


@pytest.mark.parametrize(
    "keys, value, message",
    [
        (("params", "l1/w", "trainable"), "no", """params['l1/w'].trainable is "no", expected true or false"""),
        (("nodes", 2, "attrs", "trainable"), "no", 'nodes[2].attrs.trainable is "no", expected true or false'),
        (("params", "l1/w", "trainable"), False, "params['l1/w'].trainable is false but node 2 says true"),
        (("params", "l1/w", "init"), 3, "params['l1/w'].init is 3, expected a string"),
        (("seed",), True, "corrupt graph file: seed is true, expected an integer"),
        (("seed",), 7.0, "corrupt graph file: seed is 7.0, expected an integer"),
        (("name",), None, "corrupt graph file: name is null, expected a string"),
        (("params",), [], "corrupt graph file: params is [], expected an object"),
        (("nodes", 4, "inputs"), [True, 2], "node 4 (matmul): input True is not an earlier node"),
        (("nodes", 4, "grad_of"), False, "nodes[4].grad_of is false, expected a string or null"),
        (("nodes", 4, "phase"), "sideways", 'nodes[4].phase is "sideways", expected forward, backward or update'),
        (("nodes", 4, "scope"), None, "nodes[4].scope is null, expected a string"),
        (("inputs", "x"), False, "input 'x' refers to node False, which does not exist"),
        (("arrays",), "../g.npz", 'arrays is "../g.npz", expected a file name in the same folder'),
        (("scope_counts",), {"l1": "2"}, """scope_counts is {"l1": "2"}, expected counts by scope"""),
    ],
)
def test_fields_have_exact_types(saved, keys, value, message):
    rewrite(saved, lambda d: put(d, keys, value))
    expect(saved, message)


@pytest.mark.parametrize("version", [True, 1.0, "1", None])
def test_version_must_be_an_integer(saved, version):
    rewrite(saved, lambda d: d.update(version=version))
    expect(saved, f"corrupt graph file (version is {json.dumps(version)}, expected an integer)")


def test_deeply_nested_json(saved):
    saved.write_text('{"format": "graphc.graph", "version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    expect(saved, "corrupt graph file (JSON nested too deeply to be a graphc file)")


def test_deeply_nested_attribute(saved):
    i = first(saved, "mean")
    nested = 0
    for _ in range(100):
        nested = {"$tuple": [nested]}
    rewrite(saved, lambda d: d["nodes"][i]["attrs"].update(axes=nested))
    expect(saved, f"corrupt graph file: nodes[{i}].attrs.axes is nested over 64 deep")
