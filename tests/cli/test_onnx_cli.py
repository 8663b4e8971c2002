"""`graphc render FILE.onnx` and `graphc info FILE.onnx`: an exported model draws (forward view, the
default for ONNX files) and is summarised (inputs, outputs, ops, parameters, what graphc imports);
bad files end in one line naming the file and the problem."""

import re
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper

import graphc as gc
from graphc.cli import main
from graphc.viz.render import dot_source

HAVE_DOT = shutil.which("dot") is not None


def command(capsys, *args):
    status = main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out.splitlines(), out.err


def same_drawing(a: str, b: str) -> bool:
    """Equal DOT sources, but for the Python line each load was called from (the imported nodes' location)."""
    line = re.compile(r"test_onnx_cli\.py:\d+")
    return line.sub("", a) == line.sub("", b)


def exported(tmp_path):
    g = gc.Graph("tiny")
    with g:
        x = g.input("x", ("batch", 3))
        with g.scope("dense"):
            w = g.param("w", (3, 2))
            b = g.param("b", (2,), init="zeros")
            h = gc.relu(x @ w + b)
        g.output("probs", gc.softmax(h))
    return gc.onnx.save(g, tmp_path / "tiny.onnx")


def test_render_draws_the_imported_forward_graph(tmp_path, capsys):
    path = exported(tmp_path)
    out = tmp_path / "tiny.gv"
    status, lines, err = command(capsys, "render", path, "--view", "forward", "-o", out)
    assert status == 0 and lines == [f"wrote {out}"], err
    assert same_drawing(out.read_text(), dot_source(gc.onnx.load(path), view="forward", kernels=[]))
    assert "dense" in out.read_text()  # the node names' scopes: one cluster per layer, as in graphc
    if HAVE_DOT:
        svg = tmp_path / "tiny.svg"
        status, lines, _ = command(capsys, "render", path, "--view", "forward", "-o", svg)
        assert status == 0 and svg.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_render_of_an_onnx_file_defaults_to_the_forward_view(tmp_path, capsys, monkeypatch):
    path = exported(tmp_path)
    monkeypatch.chdir(tmp_path)
    status, lines, err = command(capsys, "render", path, "-o", "m.gv")
    assert status == 0, err
    assert same_drawing((tmp_path / "m.gv").read_text(), dot_source(gc.onnx.load(path), view="forward", kernels=[]))
    status, lines, err = command(capsys, "render", path, "--view", "backward", "-o", "m.gv")
    assert status == 1 and "gives a graph without a backward part, so there is no backward view" in err


def test_info_summarises_an_onnx_file(tmp_path, capsys):
    path = exported(tmp_path)
    status, lines, err = command(capsys, "info", path)
    assert status == 0, err
    assert lines == [
        "tiny.onnx: ONNX model, IR version 8, opset 17, produced by graphc 0.1.0",
        "inputs: x: f32[batch,3]",
        "outputs: probs: f32[batch,2]",
        "ops: 4 nodes: MatMul 1, Add 1, Relu 1, Softmax 1",
        "parameters: 2 initializers, 8 values (32 bytes)",
        "graphc import: 4 nodes (matmul 1, add 1, relu 1, softmax 1), 2 parameters",
    ]


def test_info_says_why_graphc_cannot_import_a_model(tmp_path, capsys):
    node = helper.make_node("Det", ["a"], ["d"], name="det")
    graph = helper.make_graph(
        [node],
        "det",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [])],
    )
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    status, lines, err = command(capsys, "info", path)
    assert status == 0, err
    assert lines[3] == "ops: 1 nodes: Det 1"
    assert lines[-1].startswith("graphc import: not possible: ") and "Det" in lines[-1]


def test_info_summarises_a_graphc_file(tmp_path, capsys):
    g = gc.Graph("saved")
    with g:
        x = g.input("x", ("batch", 2))
        g.output("y", gc.tanh(x @ g.param("w", (2, 4))))
    g.save(tmp_path / "g.json")
    status, lines, err = command(capsys, "info", tmp_path / "g.json")
    assert status == 0, err
    assert lines == [
        "g.json: graphc graph",
        "inputs: x: f32[batch,2]",
        "outputs: y: f32[batch,4]",
        "ops: 2 nodes: matmul 1, tanh 1",
        "parameters: 1 (8 values, 8 trainable)",
    ]


def test_bad_onnx_files_are_one_line_errors(tmp_path, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07\x12\x03abc\xff\xff")
    status, lines, err = command(capsys, "info", junk)
    assert status == 1 and not lines and err.count("\n") == 1
    assert err.startswith(f"graphc info: error: '{junk}' is not an ONNX model")
    status, lines, err = command(capsys, "render", junk, "-o", tmp_path / "j.gv")
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("graphc render: error: cannot import the ONNX model: ")
    assert str(junk) in err and not (tmp_path / "j.gv").exists()
    status, _, err = command(capsys, "info", tmp_path / "missing.onnx")
    assert status == 1 and "no such file" in err


def test_exported_model_runs_after_rendering(tmp_path, capsys):
    """What `graphc render` drew is the graph gc.onnx.load gives: it runs and agrees with onnxruntime."""
    import onnxruntime as ort

    path = exported(tmp_path)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype("float32")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(gc.run(gc.onnx.load(path), {"x": x})["probs"], sess.run(None, {"x": x})[0], rtol=1e-6)
