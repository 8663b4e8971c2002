"""gc.onnx.load on bad input: files that are not ONNX, truncated, too new, missing external data;
models with unsupported ops, attributes and dtypes (every one named in one error); wrong feeds."""

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import graphc as gc
from graphc.errors import GraphcError, GraphFileError, InputError, UnsupportedModelError


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, elem=T.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _relu_model(opset=17):
    return _model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x", ["N", 4])], [_vi("y", None)], (), opset
    )


def test_every_unsupported_node_is_named_in_one_error():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Foo", ["a"], ["b"], name="foo1"),
        helper.make_node("Tanh", ["b"], ["c"], name="after_foo"),  # fed by an unsupported node: not repeated
        helper.make_node("LeakyRelu", ["a"], ["d"], name="lr", alpha=0.1, bogus=3),
        helper.make_node("Add", ["c", "d"], ["y"], name="add"),
        helper.make_node("Relu", ["x"], ["e"], name="custom", domain="com.example"),
    ]
    m = _model(nodes, [_vi("x", ["N", 4])], [_vi("y", None)])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedModelError) as info:
        gc.onnx.load(m)
    assert str(info.value) == (
        "cannot import the model (opset 17); graphc does not support:\n"
        "  node 'foo1' (Foo): graphc has no import rule for op type 'Foo'\n"
        "  node 'lr' (LeakyRelu): attribute 'bogus' not supported\n"
        "  node 'custom' (Relu): domain 'com.example' is not supported (graphc imports the default ONNX domain)"
    )
    assert [(p.node, p.op_type) for p in info.value.problems] == [
        ("foo1", "Foo"),
        ("lr", "LeakyRelu"),
        ("custom", "Relu"),
    ]


def test_unsupported_dtypes_and_attribute_values_are_named():
    w = numpy_helper.from_array(np.ones((4,), np.float16), "w16")
    nodes = [
        helper.make_node("Add", ["x", "w16"], ["a"], name="add"),
        helper.make_node("Cast", ["x"], ["b"], name="to_u8", to=T.UINT8),
        helper.make_node("Gelu", ["x"], ["c"], name="gelu", approximate="fast"),
        helper.make_node("Relu", ["h"], ["d"], name="relu_h"),
    ]
    m = _model(nodes, [_vi("x", [2, 4]), _vi("h", [2], T.INT8)], [_vi("a", None), _vi("b", None)], [w], opset=20)
    with pytest.raises(UnsupportedModelError) as info:
        gc.onnx.load(m)
    assert str(info.value) == (
        "cannot import the model (opset 20); graphc does not support:\n"
        "  initializer 'w16' has dtype FLOAT16; graphc has float32, float64, int32, int64, bool\n"
        "  graph input 'h' has dtype INT8; graphc has float32, float64, int32, int64, bool\n"
        "  node 'to_u8' (Cast): to=UINT8; graphc has float32, float64, int32, int64, bool\n"
        "  node 'gelu' (Gelu): approximate='fast' (graphc has 'none' and 'tanh')"
    )


def test_a_shape_computed_at_run_time_is_named_with_the_input():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")]
    m = _model(nodes, [_vi("x", [2, 4]), _vi("shape", [2], T.INT64)], [_vi("y", None)])
    with pytest.raises(
        UnsupportedModelError,
        match=re.escape("node 'reshape' (Reshape): its input 1 (shape, 'shape') must be known at import"),
    ) as info:
        gc.onnx.load(m)
    assert info.value.problems[0].needs_input == "shape"
    g = gc.onnx.load(m, input_values={"shape": np.array([4, 2])})  # fixed at import, it folds
    assert gc.run(g, {"x": np.arange(8, dtype="float32").reshape(2, 4)})["y"].shape == (4, 2)


def test_an_op_from_a_later_opset_is_named():
    m = _model([helper.make_node("Gelu", ["x"], ["y"], name="g")], [_vi("x", [2])], [_vi("y", None)], opset=17)
    with pytest.raises(
        UnsupportedModelError, match=r"node 'g' \(Gelu\): graphc imports Gelu from opset 20 on, not in opset 17"
    ):
        gc.onnx.load(m)


def test_not_onnx_truncated_and_missing_files(tmp_path):
    with pytest.raises(GraphFileError, match=r"no such ONNX file '.*nowhere.onnx'"):
        gc.onnx.load(tmp_path / "nowhere.onnx")
    with pytest.raises(GraphFileError, match=r"is a folder, not an ONNX file"):
        gc.onnx.load(tmp_path)
    text = tmp_path / "notes.onnx"
    text.write_text("these are my notes, not a model\n")
    with pytest.raises(GraphFileError, match=r"'.*notes.onnx' is not an ONNX model"):
        gc.onnx.load(text)
    good = tmp_path / "relu.onnx"
    onnx.save(_relu_model(), good)
    data = good.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) - 7])
    with pytest.raises(GraphFileError, match=r"'.*cut.onnx' is not an ONNX model.*truncated"):
        gc.onnx.load(cut)
    with pytest.raises(GraphFileError, match=r"expected a file path or an onnx.ModelProto, got int"):
        gc.onnx.load(3)


def test_opset_newer_than_onnx_knows(tmp_path):
    newest = onnx.defs.onnx_opset_version()
    path = tmp_path / "future.onnx"
    path.write_bytes(_relu_model(opset=newest + 1).SerializeToString())
    with pytest.raises(GraphFileError) as info:
        gc.onnx.load(path)
    assert str(info.value) == (
        f"'{path}' uses opset {newest + 1}, newer than the newest this onnx package knows ({newest}, "
        f"onnx {onnx.__version__}); graphc imports opsets 7 to {newest}"
    )


def test_missing_and_truncated_external_data(tmp_path):
    w = numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(8, 8), "w")
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [_vi("x", [2, 8])], [_vi("y", None)], [w])
    path = tmp_path / "ext.onnx"
    onnx.save(m, path, save_as_external_data=True, location="ext.data", size_threshold=0)
    g = gc.onnx.load(path)
    np.testing.assert_array_equal(g.values["w"], np.arange(64, dtype=np.float32).reshape(8, 8))
    data = tmp_path / "ext.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(
        GraphFileError,
        match=r"initializer 'w' needs bytes up to 256 of '.*ext.data', which has 100: the external data file is "
        r"truncated",
    ):
        gc.onnx.load(path)
    data.unlink()
    with pytest.raises(
        GraphFileError,
        match=r"'.*ext.onnx': initializer 'w' is stored in the external data file '.*ext.data', which is missing",
    ):
        gc.onnx.load(path)


def test_wrong_feeds_are_graphc_input_errors():
    g = gc.onnx.load(_relu_model())
    with pytest.raises(InputError, match=r"expected shape \[N,4\]"):
        gc.run(g, {"x": np.zeros((2, 5), np.float32)})
    with pytest.raises(InputError, match="no input named 'z'"):
        gc.run(g, {"x": np.zeros((2, 4), np.float32), "z": np.zeros(1)})


def test_trainable_names_must_be_initializers():
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [1, 4])], [_vi("y", None)], [w])
    with pytest.raises(
        GraphcError, match=r"trainable names 'v' are not initializers of the model \(initializers: 'w'\)"
    ):
        gc.onnx.load(m, trainable={"v"})
    with pytest.raises(GraphcError, match=r"trainable must be True, False or a set of initializer names, got 'w'"):
        gc.onnx.load(m, trainable="w")


def test_sequence_inputs_and_missing_producers_are_named():
    seq = helper.make_tensor_sequence_value_info("s", T.FLOAT, [2])
    nodes = [helper.make_node("Relu", ["ghost"], ["y"], name="reads_ghost")]
    m = _model(nodes, [seq, _vi("x", [2])], [_vi("y", None), _vi("z", None)])
    with pytest.raises(UnsupportedModelError) as info:
        gc.onnx.load(m)
    assert str(info.value).splitlines()[1:] == [
        "  graph input 's' is a sequence, not a tensor",
        "  node 'reads_ghost' (Relu): input 'ghost' is not a graph input, an initializer or an earlier node's output",
        "  graph output 'z' is made by no node",
    ]
