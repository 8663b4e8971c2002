"""Graphviz drawings: files written, roles coloured, backward distinct, kernels clustered."""

import re
import shutil
import sys
import xml.etree.ElementTree as ET

import pytest

import graphc as gc
from graphc.errors import AttributeValueError
from graphc.viz import render as viz

HAVE_DOT = shutil.which("dot") is not None


def training_graph():
    with gc.Graph("mlp") as g:
        x = g.input("x", ("batch", 3))
        with g.scope("dense"):
            w = g.param("w", (3, 2))
            h = gc.tanh(x @ w)
        loss = gc.mean(h * 0.5)
        g.output("loss", loss)
    gw = gc.grad(loss, w)
    g.update("dense/w", w - 0.1 * gw)
    return g, h, loss, gw


def styled(line, role):
    """The node statement carries every attribute of the role's style (quoted or not)."""
    return all(f"{k}={v}" in line or f'{k}="{v}"' in line for k, v in viz.STYLE[role].items())


def node_lines(source):
    return [ln.strip() for ln in source.splitlines() if ln.strip().startswith("n") and "[" in ln and "->" not in ln]


def test_all_roles_and_markers_in_gv(tmp_path):
    g, h, loss, gw = training_graph()
    out = viz.render(g, tmp_path / "g.gv")
    assert out == [tmp_path / "g.gv"] and not (tmp_path / "g.svg").exists()
    src = out[0].read_text()
    assert 'label="mlp (training step)"' in src
    lines = {ln.split(" ", 1)[0]: ln for ln in node_lines(src)}
    assert styled(lines["n0"], "input") and "x\\nf32[batch,3]" in lines["n0"]
    assert styled(lines["n1"], "param") and "dense/w" in lines["n1"]
    assert styled(lines[f"n{gw.id}"], "gradient") and "shape=hexagon" in lines[f"n{gw.id}"]
    assert "∇ dense/w" in lines[f"n{gw.id}"]  # the parameter's gradient, named after it
    assert styled(lines[f"n{loss.id}"], "loss") and "→ loss" in lines[f"n{loss.id}"]  # the loss, an output
    upd = g.updates["dense/w"]
    assert "#d9c2f0" in lines[f"n{upd.id}"] and "⇒ dense/w" in lines[f"n{upd.id}"]
    # the update arrow back to the parameter (written from the parameter, drawn pointing at it)
    back = [ln for ln in src.splitlines() if ln.strip().startswith(f"n1 -> n{upd.id} [") and "dir=back" in ln]
    assert len(back) == 1 and "label=update" in back[0]
    # tanh's output is read by its gradient rule: a saved activation with a red border and edge
    assert "saved for backward" in lines[f"n{h.id}"] and "#d62728" in lines[f"n{h.id}"]
    assert "saved for backward" not in lines[f"n{loss.id}"]
    # shapes on edges, scalar constants folded into their consumer, scopes as clusters
    assert 'label="f32[batch,3]"' in src and 'label="f32[batch,2]"' in src
    assert "mul(·, 0.5)" in src and "0.5 const" not in src
    assert re.search(r"subgraph cluster_scope_dense_\d+ \{", src) and "label=dense" in src


def test_forward_and_backward_parts(tmp_path):
    g, h, loss, gw = training_graph()
    fwd = viz.build(g, part="forward").source
    bwd = viz.build(g, part="backward").source
    assert "hexagon" not in fwd and f"n{loss.id} " in fwd and f"n{gw.id} " not in fwd
    assert "saved for backward" not in fwd
    assert "hexagon" in bwd and f"n{gw.id} " in bwd and "saved for backward" in bwd
    assert f"n{loss.id} " not in bwd  # the loss value itself is not read by its gradient
    nodes, bwd_ids = viz.select(g, part="backward")
    assert all(n.id in bwd_ids or any(n in m.inputs for m in nodes if m.id in bwd_ids) for n in nodes)
    with pytest.raises(AttributeValueError, match="part must be one of 'all', 'forward', 'backward', got 'sideways'"):
        viz.build(g, part="sideways")


def test_kernels_drawn_as_clusters():
    g, h, loss, gw = training_graph()

    class Kernel:
        def __init__(self, name, node_ids):
            self.name, self.node_ids = name, node_ids

    src = viz.build(g, kernels=[Kernel("fused_tanh", [h.id - 1, h.id]), Kernel("empty", [])]).source
    assert re.search(r"subgraph cluster_kernel_0_\d+ \{", src) and 'label="kernel fused_tanh: matmul, tanh"' in src
    assert "cluster_kernel_1" not in src
    assert src.index("cluster_scope_dense") < src.index("cluster_kernel_0")  # the kernel sits in its layer's cluster
    cluster = src.split("subgraph cluster_kernel_0")[1].split("}")[0]
    assert f"n{h.id} " in cluster and f"n{h.id - 1} " in cluster and f"n{loss.id} " not in cluster


@pytest.mark.skipif(not HAVE_DOT, reason="needs the Graphviz dot program")
def test_svg_and_png_written(tmp_path):
    g, *_ = training_graph()
    out = gc.render(g, tmp_path / "sub" / "train.svg", part="backward", title="backward pass")
    assert out == [tmp_path / "sub" / "train.gv", tmp_path / "sub" / "train.svg"]
    root = ET.parse(out[1]).getroot()
    assert root.tag.endswith("svg")
    text = out[1].read_text()
    assert "backward pass" in text and "saved for backward" in text
    png = gc.render(g, tmp_path / "train.png")
    assert png[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert gc.render(g, tmp_path / "noext")[1] == tmp_path / "noext.svg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noext.gv", "noext.svg", "sub", "train.gv", "train.png"]


def test_without_dot_writes_gv_and_says_how_to_install(tmp_path, monkeypatch):
    g, *_ = training_graph()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.warns(viz.DotNotFoundWarning, match="apt-get install graphviz") as rec:
        out = viz.render(g, tmp_path / "g.svg")
    assert "brew install graphviz" in str(rec[0].message) and "conda" in str(rec[0].message)
    assert out == [tmp_path / "g.gv"] and out[0].exists() and not (tmp_path / "g.svg").exists()
    with pytest.raises(viz.DotNotFoundError, match="apt-get install graphviz"):
        viz.render(g, tmp_path / "h.png", require_dot=True)
    assert (tmp_path / "h.gv").exists()


def test_unknown_format(tmp_path):
    g, *_ = training_graph()
    with pytest.raises(
        AttributeValueError, match="unknown output format 'xyz' for .*g.xyz'; use .svg, .png, .pdf or .gv"
    ):
        viz.render(g, tmp_path / "g.xyz")
    assert list(tmp_path.iterdir()) == []


def test_render_takes_a_compiled_step_and_draws_its_kernels(tmp_path):
    with gc.Graph("cbr") as g:
        x = g.input("x", ("batch", 2, 6, 6))
        w = g.param("w", (3, 2, 3, 3))
        b = g.param("b", (3, 1, 1), init="zeros")
        g.output("y", gc.relu(gc.conv2d(x, w, padding=1) + b))
    step = gc.compile(g, "numba")
    (gv,) = gc.render(step, tmp_path / "k.gv")
    assert gv.read_text().count("subgraph cluster_kernel") == len(step.kernels) == 1


def test_render_rejects_what_is_not_a_graph(tmp_path):
    with pytest.raises(gc.GraphcError, match="render: expected a Graph.*got str"):
        gc.render("graph.json", tmp_path / "x.svg")


def test_a_value_read_only_for_its_shape_is_not_a_saved_activation(tmp_path):
    with gc.Graph("shape_only") as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 2))
        h = gc.tanh(x @ w)  # its gradient reads h: saved
        loss = gc.mean(h * 2.0)  # mean's gradient reads only the shape of h * 2.0 (shape_size)
    g.output("gw", gc.grad(loss, w))
    g.output("loss", loss)
    source = gc.render(g, tmp_path / "s.gv")[0].read_text()
    saved = [line for line in source.splitlines() if "saved for backward" in line and "legend" not in line]
    assert len(saved) == 1 and "tanh" in saved[0]


def test_forward_part_leaves_out_sources_that_only_the_backward_part_reads(tmp_path):
    from graphc import nn

    with gc.Graph("opt") as g:
        x = g.input("x", ("batch", 3))
        y = g.input("y", ("batch",), "int64")
        loss = nn.losses.cross_entropy(nn.Dense(4)(x, training=True), y)
    tg = nn.training_graph(loss, nn.optim.SGD(0.1, momentum=0.9))  # velocity: read by updates only
    g.output("loss", loss)
    forward = gc.render(g, tmp_path / "f.gv", part="forward")[0].read_text()
    everything = gc.render(g, tmp_path / "a.gv", fold_updates=False)[0].read_text()
    for name in tg.state_names:
        assert f'label="{name}' in everything and f'label="{name}' not in forward
    assert 'label="dense/w' in forward


BAD_ARGUMENTS = [
    ({"part": "bwd"}, "render: part must be one of 'all', 'forward', 'backward', got 'bwd'"),
    ({"part": ["forward"]}, r"render: part must be one of 'all', 'forward', 'backward', got \['forward'\]"),
    ({"title": 3}, "render: title must be a str or None, got 3"),
    ({"roots": "loss"}, "render: roots must be a node or a list of nodes, got 'loss'"),
    ({"roots": [1]}, "render: roots must be a node or a list of nodes, got 1"),
    ({"kernels": 5}, r"render: kernels must be a list of objects with .name and .node_ids, got 5"),
    ({"kernels": ["k0"]}, r"render: kernels must be a list of objects with .name and .node_ids, got 'k0'"),
    ({"fold_scalars": "yes"}, "render: fold_scalars must be True or False, got 'yes'"),
    ({"require_dot": 1}, "render: require_dot must be True or False, got 1"),
    ({"colour": "red"}, "render: unknown argument 'colour'; expected one of roots, part, kernels, title, "
                        "fold_scalars, require_dot, view, collapse, expand, shapes, passes, legend, max_nodes, "
                        "fold_updates, parts"),
    ({"view": "sideways"}, "render: view must be one of 'train', 'forward', 'backward', got 'sideways'"),
    ({"collapse": "yes"}, "render: collapse must be True or False, got 'yes'"),
    ({"shapes": None}, "render: shapes must be True or False, got None"),
    ({"legend": 0}, "render: legend must be True or False, got 0"),
    ({"parts": "yes"}, "render: parts must be True, False or None, got 'yes'"),
    ({"passes": "after"}, "render: passes must be True, False or None, got 'after'"),
    ({"max_nodes": 0}, "render: max_nodes must be a positive int or None, got 0"),
    ({"max_nodes": 2.5}, "render: max_nodes must be a positive int or None, got 2.5"),
    ({"expand": 3}, "render: expand must be a layer name \\(str\\) or None, got 3"),
    ({"expand": "conv"}, "render: expand='conv' is not a layer of this drawing; expected one of 'dense', 'loss'"),
    ({"view": "forward", "part": "forward"}, "render: give view= or part= \\(its older name\\), not both"),
]  # fmt: skip


@pytest.mark.parametrize("entry", [gc.render, viz.render], ids=["gc.render", "viz.render"])
@pytest.mark.parametrize("kwargs, message", BAD_ARGUMENTS, ids=[next(iter(k)) + "=" + repr(next(iter(k.values())))
                                                                for k, _ in BAD_ARGUMENTS])  # fmt: skip
def test_bad_arguments_name_the_argument_the_value_and_the_choices(tmp_path, entry, kwargs, message):
    g, *_ = training_graph()
    with pytest.raises(AttributeValueError, match="^" + message + "$"):
        entry(g, tmp_path / "g.gv", **kwargs)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_path_and_roots_of_another_graph(tmp_path):
    g, h, loss, gw = training_graph()
    with pytest.raises(AttributeValueError, match="^render: path must be a str or a path, got 3$"):
        gc.render(g, 3)
    other, *_ = training_graph()
    with pytest.raises(
        AttributeValueError, match=r"^render: root mean#\d+ is not a node of the graph drawn \('mlp'\)$"
    ):
        gc.render(other, tmp_path / "g.gv", roots=[loss])
    # a compiled step draws its optimized copy: roots of the declared graph are refused, not misread
    with gc.Graph("two") as g2:
        x = g2.input("x", (3,))
        y = gc.tanh(x) * 2.0
        g2.output("y", y)
    step = gc.compile(g2, "numba")
    with pytest.raises(AttributeValueError, match="is not a node of the graph drawn"):
        gc.render(step, tmp_path / "s.gv", roots=[y])
    assert list(tmp_path.iterdir()) == []


def test_a_single_root_node_and_a_kernel_generator_are_accepted(tmp_path):
    g, h, loss, gw = training_graph()

    class Kernel:
        name, node_ids = "k", [h.id]

    (gv,) = gc.render(g, tmp_path / "one.gv", roots=h, kernels=(k for k in [Kernel()]))
    src = gv.read_text()
    assert f"\tn{h.id} [" in src and f"\tn{loss.id} [" not in src and 'label="kernel k: tanh"' in src


@pytest.mark.parametrize("entry", [gc.render, viz.render], ids=["gc.render", "viz.render"])
def test_the_no_dot_warning_points_at_the_callers_line(tmp_path, monkeypatch, entry):
    g, *_ = training_graph()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.warns(viz.DotNotFoundWarning) as rec:
        line = sys._getframe().f_lineno + 1
        entry(g, tmp_path / "g.svg")
    assert len(rec) == 1 and (rec[0].filename, rec[0].lineno) == (__file__, line)


def _fake_dot(tmp_path, script):
    """A stand-in for Graphviz's dot (called as `dot -T<fmt> in.gv -o out`), so the image path
    is tested where Graphviz is not installed."""
    exe = tmp_path / "bin" / "dot"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return str(exe)


def test_the_image_replaces_the_old_one_in_one_step_and_a_dot_failure_keeps_it(tmp_path, monkeypatch):
    g, *_ = training_graph()
    out = tmp_path / "out"
    exe = _fake_dot(tmp_path, 'printf "<svg>%s</svg>" "$1" > "$4"\n')
    monkeypatch.setattr(shutil, "which", lambda name: exe if name == "dot" else None)
    assert gc.render(g, out / "g.svg") == [out / "g.gv", out / "g.svg"]
    assert (out / "g.svg").read_text() == "<svg>-Tsvg</svg>"
    exe = _fake_dot(tmp_path / "broken", 'echo "syntax error in line 3" >&2; echo partial > "$4"; exit 1\n')
    with pytest.raises(gc.GraphcError, match=r"^render: dot failed on .*g\.gv: syntax error in line 3$"):
        gc.render(g, out / "g.svg")
    assert (out / "g.svg").read_text() == "<svg>-Tsvg</svg>"  # the old image, not the partial one
    assert sorted(p.name for p in out.iterdir()) == ["g.gv", "g.svg"]  # no temporary file left


def test_write_failures_name_the_target_and_a_folder_is_not_a_file_name(tmp_path):
    g, *_ = training_graph()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(gc.GraphFileError, match=r"^cannot write drawing '.*afile/sub/g\.gv': '.*afile' is a file"):
        gc.render(g, tmp_path / "afile" / "sub" / "g.svg")
    with pytest.raises(OSError):  # FileWriteError is an OSError too
        gc.render(g, tmp_path / "afile" / "g.gv")
    with pytest.raises(AttributeValueError, match=r"^render: path '.*' is a folder; give a file name such as "):
        gc.render(g, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_temporary_files_of_killed_renders_are_removed_by_the_next_one(tmp_path, monkeypatch):
    import os

    g, *_ = training_graph()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    stale, fresh = tmp_path / ".g.gv.abcd1234.tmp", tmp_path / ".g.svg.wxyz5678.tmp"
    other = tmp_path / ".h.gv.abcd1234.tmp"
    for p in (stale, fresh, other):
        p.write_text("left by a killed render")
    two_days_ago = stale.stat().st_mtime - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))
    os.utime(other, (two_days_ago, two_days_ago))
    with pytest.warns(viz.DotNotFoundWarning):
        gc.render(g, tmp_path / "g.svg")  # its names: g.gv and g.svg
    assert not stale.exists()  # old enough that no render can still be writing it
    assert fresh.exists()  # may belong to a render still running
    assert other.exists()  # another drawing's
