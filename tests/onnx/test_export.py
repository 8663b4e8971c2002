"""ONNX export of whole models (the examples' MLP and CNN, recurrent networks) and its bad input:
the files pass onnx.checker's full check and agree with graphc in onnxruntime; graphs with ops that
have no ONNX form, paths that cannot be written and wrong arguments get clear errors."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from example_scripts import example

import graphc as gc
from graphc import nn
from graphc.datasets import load_digits


def perturbed(model, seed=0):
    """The model with random weights and running statistics (an untrained model's are too regular
    to tell a missing scale or shift apart)."""
    rng = np.random.default_rng(seed)
    for k, v in model.graph.values.items():
        if v.dtype.kind == "f" and v.ndim:
            noise = rng.standard_normal(v.shape).astype(v.dtype)
            model.graph.values[k] = np.abs(v + 0.5 * noise) + 0.5 if k.endswith("var") else v + 0.1 * noise
    return model


def run_onnx(path_or_model, feeds):
    data = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def check_model_agrees(model, x, tmp_path):
    path = gc.onnx.save(model, tmp_path / "model.onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    got = run_onnx(path, {"x": x})
    output, predictions = gc.run(model.graph, {"x": x}, outputs=["eval/output", "eval/predictions"])
    np.testing.assert_allclose(got["output"], output, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["predictions"], predictions, rtol=1e-4, atol=1e-6)
    return proto


def test_mlp_example_exports_and_agrees(tmp_path):
    model = perturbed(example("mlp_digits").build())
    x = load_digits(flat=True)[0][:16].astype("float32")
    proto = check_model_agrees(model, x, tmp_path)
    assert proto.opset_import[0].version == 17 and proto.ir_version == 8
    assert [i.name for i in proto.graph.input] == ["x"]
    (dims,) = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input]
    assert dims == ["batch", 64]
    assert [o.name for o in proto.graph.output] == ["output", "predictions"]
    # the weights are initializers; the optimizer's state and dropout are not in the file
    inits = {t.name for t in proto.graph.initializer}
    assert inits == {k for k in model.graph.params if k.startswith("mlp/")}
    assert not {n.op_type for n in proto.graph.node} & {"Dropout", "RandomUniformLike"}


def test_cnn_example_exports_and_agrees(tmp_path):
    model = perturbed(example("cnn_digits").build())
    x = load_digits()[0][:8].astype("float32")
    proto = check_model_agrees(model, x, tmp_path)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Conv", "MaxPool", "Relu", "MatMul"} <= ops
    # every value a graphc node computes is typed (value_info; the full check holds them to ONNX's
    # shape inference): a viewer shows the shapes graphc has, batch as a dim_param
    typed = {v.name: v for v in proto.graph.value_info}
    computed = {o for n in proto.graph.node if n.op_type not in ("Constant", "Shape", "Concat") for o in n.output}
    assert computed - {o.name for o in proto.graph.output} <= set(typed)
    relu = next(n.output[0] for n in proto.graph.node if n.name == "cnn/relu/Relu")
    dims = [d.dim_param or d.dim_value for d in typed[relu].type.tensor_type.shape.dim]
    assert dims == ["batch", 32, 8, 8]


def test_lstm_model_exports_as_scan_and_agrees(tmp_path):
    net = nn.Sequential([nn.LSTM(6, return_sequences=True), nn.GRU(5), nn.Dense(3)])
    model = perturbed(nn.Model(net, input_shape=(7, 4), backend="reference"))
    x = np.random.default_rng(1).standard_normal((3, 7, 4)).astype("float32")
    proto = check_model_agrees(model, x, tmp_path)
    assert [n.op_type for n in proto.graph.node].count("Scan") == 2


def test_text_model_with_embedding_and_layer_norm_agrees(tmp_path):
    net = nn.Sequential([nn.Embedding(20, 6), nn.LayerNorm(), nn.GRU(5), nn.Dense(3)])
    model = perturbed(nn.Model(net, input_shape=(7,), input_dtype="int64", backend="reference"))
    x = np.random.default_rng(0).integers(0, 20, (4, 7))
    path = gc.onnx.save(model, tmp_path / "text.onnx")
    (want,) = gc.run(model.graph, {"x": x}, outputs=["eval/output"])
    np.testing.assert_allclose(run_onnx(path, {"x": x})["output"], want, rtol=1e-4, atol=1e-5)
    assert onnx.load(path).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_models_past_one_file_s_size_are_refused(monkeypatch):
    from graphc.onnx import export

    monkeypatch.setattr(export, "MAX_BYTES", 20)
    with pytest.raises(
        gc.GraphcError, match=r"its parameters take 0.00 GB, more than one ONNX file holds .*external data"
    ):
        gc.onnx.to_onnx(_small_with_weights())


def _small_with_weights():
    g = gc.Graph("weights")
    with g:
        g.output("y", g.input("x", (2,)) @ g.param("w", (2, 3)))
    return g


def test_trained_values_are_exported(tmp_path):
    g = gc.Graph("affine")
    with g:
        x = g.input("x", ("batch", 2))
        w = g.param("w", (2, 1))
        g.output("y", x @ w)
    g.values["w"] = np.asarray([[2.0], [-1.0]], "float32")
    path = gc.onnx.save(g, tmp_path / "affine.onnx")
    got = run_onnx(path, {"x": np.asarray([[1.0, 1.0], [3.0, 0.0]], "float32")})
    np.testing.assert_array_equal(got["y"], [[1.0], [6.0]])


def test_outputs_can_be_chosen_and_renamed():
    g = gc.Graph("two")
    with g:
        x = g.input("x", (3,))
        g.output("a", gc.exp(x))
        g.output("b", x)  # an input as an output: an Identity
    model = gc.onnx.to_onnx(g, outputs={"first": "a", "same": "b"})
    assert [o.name for o in model.graph.output] == ["first", "same"]
    v = np.asarray([0.0, 1.0, 2.0], "float32")
    got = run_onnx(model, {"x": v})
    np.testing.assert_allclose(got["first"], np.exp(v), rtol=1e-6)
    np.testing.assert_array_equal(got["same"], v)
    assert [o.name for o in gc.onnx.to_onnx(g, outputs="b").graph.output] == ["b"]


def _conv_grads():
    g = gc.Graph("grads")
    with g:
        x = g.input("x", (1, 1, 5, 5))
        w = g.param("w", (2, 1, 3, 3))
        loss = gc.sum(gc.max_pool2d(gc.conv2d(x, w), 3))
        gx, gw = gc.grad(loss, [x, w])
        g.output("loss", loss)
        g.output("gx", gx)
        g.output("gw", gw)
    return g


def test_gradient_ops_are_refused_all_in_one_message(tmp_path):
    g = _conv_grads()
    path = tmp_path / "grads.onnx"
    with pytest.raises(gc.UnsupportedOpError) as info:
        gc.onnx.save(g, path)
    msg = str(info.value)
    # (conv2d_grad_input, the transposed convolution, has a form: ConvTranspose)
    assert msg.startswith("cannot export graph 'grads' to ONNX: 2 node(s) have no ONNX form")
    assert "(ops conv2d_grad_weight, max_pool2d_grad)" in msg
    for op in ("conv2d_grad_weight", "max_pool2d_grad"):
        assert f": {op} (declared at tests/onnx/test_export.py:" in msg
    assert "a gradient op" in msg
    assert [n.op for n, _ in info.value.problems] == ["max_pool2d_grad", "conv2d_grad_weight"]
    assert not path.exists()
    gc.onnx.save(g, path, outputs=["loss"])  # the forward part alone exports
    np.testing.assert_allclose(
        run_onnx(path, {"x": np.ones((1, 1, 5, 5), "float32")})["loss"],
        gc.run(g, {"x": np.ones((1, 1, 5, 5), "float32")})["loss"],
        rtol=1e-6,
    )


def test_random_ops_are_refused_with_the_way_out():
    g = gc.Graph("drop")
    with g:
        x = g.input("x", ("batch", 4))
        g.output("y", gc.dropout(x, 0.5))
    with pytest.raises(
        gc.UnsupportedOpError, match=r"dropout_mask#\d+: dropout_mask .*draws random numbers.*training=False"
    ):
        gc.onnx.to_onnx(g)


def test_a_failed_export_leaves_an_existing_file_intact(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"before")
    with pytest.raises(gc.UnsupportedOpError):
        gc.onnx.save(_conv_grads(), path)
    assert path.read_bytes() == b"before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def _small():
    g = gc.Graph("small")
    with g:
        g.output("y", gc.relu(g.input("x", (2,))))
    return g


def test_unwritable_paths_are_clear_errors(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(
        gc.FileWriteError, match=r"cannot write an ONNX model '.*file/m.onnx': .*'.*file' is a file, not a folder"
    ):
        gc.onnx.save(_small(), tmp_path / "file" / "m.onnx")
    with pytest.raises(gc.FileWriteError, match=r"cannot write an ONNX model '.*': it is a folder \(give a file name"):
        gc.onnx.save(_small(), tmp_path)
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if _can_write(folder):
            pytest.skip("running as a user who writes anywhere (root)")
        with pytest.raises(gc.FileWriteError, match=r"cannot write an ONNX model '.*locked/m.onnx': Permission denied"):
            gc.onnx.save(_small(), folder / "m.onnx")
    finally:
        folder.chmod(0o700)


def _can_write(folder) -> bool:
    try:
        (folder / ".probe").write_text("")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_bad_arguments_are_clear_errors():
    with pytest.raises(gc.GraphcError, match="ONNX export needs a graphc Graph or an nn.Model, got int"):
        gc.onnx.to_onnx(3)
    with pytest.raises(gc.GraphStructureError, match=r"no output named 'z' \(outputs: y\)"):
        gc.onnx.to_onnx(_small(), outputs=["z"])
    with pytest.raises(gc.GraphStructureError, match="the graph has no outputs"):
        gc.onnx.to_onnx(gc.Graph("empty"))
    g = _small()
    with g:
        g.output("x", g.outputs["y"] * 2.0)
    with pytest.raises(gc.GraphStructureError, match="output 'x' has the name of an input or parameter"):
        gc.onnx.to_onnx(g)


def test_without_the_onnx_package_the_error_says_what_to_install(monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "onnx" or m.startswith(("onnx.", "graphc.onnx."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(gc.GraphcError, match=r"gc.onnx.save needs the onnx package.*pip install onnx"):
        gc.onnx.save(_small(), "never.onnx")
    with pytest.raises(gc.GraphcError, match=r"gc.onnx.load needs the onnx package"):
        gc.onnx.load("never.onnx")
