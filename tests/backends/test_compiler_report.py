"""Seeing what the compiler did: the graph after each pass, the nodes/kernels summary, the kernels
listed and drawn."""

import re
import shutil

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphcError
from graphc.passes import PASSES

pytest.importorskip("numba")


def mlp():
    with gc.Graph("mlp") as g:
        x = g.input("x", ("batch", 6))
        y = g.input("y", ("batch",), "int64")
        h = gc.relu(x @ g.param("w0", (6, 8)) + g.param("b0", (8,), init="zeros"))
        logits = h @ g.param("w1", (8, 3)) + g.param("b1", (3,), init="zeros")
        loss = gc.cross_entropy(logits, y) * 1.0  # x*1: something for simplify to remove
        g.output("loss", loss)
        for name, gr in gc.gradients(loss).items():
            g.update(name, g.params[name] - 0.1 * gr)
    return g


def cbr():
    with gc.Graph("cbr") as g:
        x = g.input("x", ("batch", 2, 6, 6))
        w = g.param("w", (3, 2, 3, 3))
        b = g.param("b", (3, 1, 1), init="zeros")
        g.output("y", gc.relu(gc.conv2d(x, w) + b))
    return g


FEEDS = {"x": np.ones((4, 6), np.float32), "y": np.array([0, 1, 2, 1])}


def test_trace_prints_the_graph_after_each_pass_in_order():
    lines = []
    g2 = gc.optimize(mlp(), trace=lines.append)
    heads = [s.splitlines()[0] for s in lines]
    assert heads[0].startswith("== input:")
    assert [re.match(r"== after (\w+):", h).group(1) for h in heads[1:]] == list(PASSES)
    assert all("graph mlp(" in s for s in lines)  # each carries the graph's text form
    assert lines[-1].split("\n", 1)[1] == g2.text()
    times_one = re.compile(r"mul\((%\d+, 1\.0|1\.0, %\d+)\)")
    assert times_one.search(lines[0]) and not times_one.search(lines[-1])  # loss * 1.0 simplified away


def test_disabled_passes_are_not_run_or_listed():
    lines = []
    res = gc.passes.run_passes(mlp(), disable=("fold", "simplify"), trace=lines.append)
    loops = ["loop_prune", "loop_hoist", "loop_accumulate"]
    assert [r.stage for r in res.summary.rows] == ["cse", *loops, "stabilize", "dce"]
    assert not any("after fold" in s or "after simplify" in s for s in lines)
    with pytest.raises(GraphcError, match="valid passes: cse, fold"):
        gc.compile(mlp(), "numba", disable=("folding",))


def test_compiled_summary_counts_nodes_and_kernels():
    g = mlp()
    exe = gc.compile(g, "numba")
    rep = exe.report()
    assert [r.stage for r in rep.rows] == [*PASSES, "fuse"]
    first, last = rep.rows[0], rep["dce"]
    assert first.nodes_before == len(g.nodes) and last.nodes_after == len(exe.graph.nodes)
    assert last.nodes_after < first.nodes_before  # the passes removed something
    fuse = rep["fuse"]
    ops = [n for n in exe.nodes if n.op not in ("input", "param", "const")]
    assert fuse.kernels_before == len(ops) and fuse.kernels_after == len(exe.kernels)
    assert fuse.kernels_after < fuse.kernels_before / 1.4  # fusion does merge
    text = str(rep)
    for name in [*PASSES, "fuse", "total"]:
        assert re.search(rf"^{name}\s", text, re.M), name
    assert re.search(
        rf"^fuse\s+{fuse.nodes_before}\s+{fuse.nodes_after}\s+{len(ops)}\s+{len(exe.kernels)}\s", text, re.M
    )
    # one line per kernel, by name, with its kind
    listing = exe.summary().splitlines()
    assert len(listing) == len(exe.kernels)
    for line, k in zip(listing, exe.kernels):
        assert line.startswith(k.name) and k.kind in line
    np.testing.assert_allclose(exe(FEEDS)["loss"], gc.run(mlp(), FEEDS)["loss"], rtol=1e-5)


def test_without_passes_the_report_has_only_fusion():
    exe = gc.compile(mlp(), "numba", passes=False)
    rep = exe.report()
    assert [r.stage for r in rep.rows] == ["fuse"]
    assert rep["fuse"].kernels_after == len(exe.kernels)


def test_tracing_then_compiling_is_what_compile_does():
    """The documented way to watch the passes of a compile: optimize with a trace, then compile
    the result with passes=False; the kernels are the same as compile's own."""
    lines = []
    g2 = gc.optimize(mlp(), trace=lines.append)
    a = gc.compile(g2, "numba", passes=False)
    b = gc.compile(mlp(), "numba")
    assert len(lines) == len(PASSES) + 1
    assert [k.name for k in a.kernels] == [k.name for k in b.kernels]
    np.testing.assert_allclose(a(FEEDS)["loss"], b(FEEDS)["loss"], rtol=1e-6)


def test_compile_takes_a_trace():
    lines = []
    gc.compile(mlp(), "numba", trace=lines.append)
    assert len(lines) == len(PASSES) + 1


def test_conv_bias_relu_is_reported_as_one_kernel():
    exe = gc.compile(cbr(), "numba")
    assert len(exe.kernels) == 1 and exe.kernels[0].kind == "output-fusable"
    assert exe.report()["fuse"].kernels_before == 3  # conv2d, add, relu
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(exe(x=x)["y"], gc.run(cbr(), {"x": x})["y"], rtol=1e-4, atol=1e-5)


def _clusters(source: str) -> list[str]:
    return re.findall(r"subgraph (cluster_kernel_\d+)", source)


def test_render_draws_one_cluster_per_kernel(tmp_path):
    exe = gc.compile(mlp(), "numba")
    exe(FEEDS)
    # every node drawn (an optimizer's work is folded into one box per parameter by default)
    (gv,) = gc.render(exe.graph, tmp_path / "kernels.gv", kernels=exe.kernels, fold_updates=False)
    src = gv.read_text()
    assert len(_clusters(src)) == len(exe.kernels)
    for k in exe.kernels:
        assert f"kernel {k.name}" in src
    # every op node drawn sits inside a cluster: count node statements per cluster
    body = src.split("subgraph cluster_kernel_")[1:]
    inside = sum(len(re.findall(r"^\s+n\d+ \[", part.split("}")[0], re.M)) for part in body)
    drawn_ops = {n.id for n in exe.nodes if n.op not in ("input", "param", "const")}
    assert inside == len(drawn_ops)


def test_render_conv_bias_relu_as_one_cluster(tmp_path):
    exe = gc.compile(cbr(), "numba")
    (gv,) = gc.render(exe.graph, tmp_path / "cbr.gv", kernels=exe.kernels)
    src = gv.read_text()
    assert _clusters(src) == ["cluster_kernel_0"]
    cluster = src.split("subgraph cluster_kernel_0")[1].split("}")[0]
    for op in ("conv2d", "add", "relu"):
        assert f"= {op}" in cluster, op


@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz dot program is not installed")
def test_render_kernels_to_svg(tmp_path):
    exe = gc.compile(mlp(), "numba")
    paths = gc.render(exe.graph, tmp_path / "kernels.svg", kernels=exe.kernels, part="backward")
    svg = paths[-1].read_text()
    assert svg.lstrip().startswith("<?xml") and "cluster_kernel_" in svg
