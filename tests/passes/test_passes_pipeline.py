"""The rewriting utility, the pipeline (order, disabling, trace, summary) and DCE/CSE/folding."""

import numpy as np
import pytest
from passcheck import assert_same, live_ops, results

import graphc as gc
from graphc.errors import GraphcError
from graphc.ir.phase import Phase
from graphc.passes import PASSES, Optimized, cse, dce, fold, optimize, rewrite, run_passes

rng = np.random.default_rng(0)


def mlp_graph():
    """A small training graph: forward, backward, an SGD update and a state variable."""
    g = gc.Graph("mlp")
    with g:
        x = g.input("x", ("batch", 4))
        with g.scope("dense"):
            w = g.param("w", (4, 3))
            b = g.param("b", (3,), init="zeros")
        steps = g.variable("steps", ())
        h = gc.tanh(x @ w + b)
        loss = gc.mean(h * h) * 1.0
        g.output("loss", loss)
        grads = gc.gradients(loss)
        for name, gr in grads.items():
            g.update(name, g.params[name] - 0.1 * gr)
        g.update("steps", steps + 1.0)
    return g


FEEDS = {"x": rng.standard_normal((5, 4)).astype(np.float32)}


def test_rewrite_copy_preserves_everything():
    g = mlp_graph()
    g2 = rewrite(g)
    assert g2 is not g and g2.values is g.values
    assert list(g2.inputs) == list(g.inputs) and list(g2.params) == list(g.params)
    assert len(g2.nodes) == len(g.nodes)
    for a, b in zip(g.nodes, g2.nodes):
        fields = ("op", "name", "scope", "location", "shape", "dtype")
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        assert a.attrs.key() == b.attrs.key()
        assert (a.phase, a.grad_of) == (b.phase, b.grad_of)  # a copy keeps every id, so every label
        assert all(x.graph is g2 for x in b.inputs) and b.graph is g2
    assert g2.params["dense/w"].scope == "dense"
    assert g2.text() == g.text()
    assert_same(g, g2, FEEDS, rtol=0, atol=0)


def test_optimized_step_updates_the_users_parameters_in_place():
    g = mlp_graph()
    g2 = optimize(g)
    w_before = g.values["dense/w"].copy()
    expected = results(g, FEEDS)["update:dense/w"]
    step = gc.compile(g2)
    step(FEEDS)
    np.testing.assert_allclose(g.values["dense/w"], expected, rtol=1e-6)
    assert not np.allclose(g.values["dense/w"], w_before)
    assert g.values["steps"] == 1.0
    step(FEEDS)
    assert g.values["steps"] == 2.0


@pytest.mark.parametrize("name", list(PASSES))
def test_each_pass_preserves_semantics_on_a_training_graph(name):
    g = mlp_graph()
    g2 = PASSES[name](g)
    assert g2 is not g
    assert_same(g, g2, FEEDS)


def test_optimize_preserves_semantics_and_shrinks():
    g = mlp_graph()
    g2 = optimize(g)
    assert_same(g, g2, FEEDS)
    assert len(g2.live_nodes()) < len(g.live_nodes())
    # the gradient seed's "* 1.0" chain and the mean's constants fold away
    assert live_ops(g2).count("mul") < live_ops(g).count("mul")


def test_pass_order_is_documented_and_fixed():
    loops = ["loop_prune", "loop_hoist", "loop_accumulate"]
    assert list(PASSES) == ["cse", "fold", *loops, "stabilize", "simplify", "dce"]
    import graphc.passes.pipeline as pipeline

    for name in PASSES:
        assert name in pipeline.__doc__
        assert PASSES[name].__doc__


def test_disable_by_name():
    with gc.Graph("d") as g:
        x = g.input("x", (3,))
        g.output("y", x * 1.0)
    assert live_ops(optimize(g)) == []
    g2 = optimize(g, disable=("simplify",))
    assert live_ops(g2) == ["mul"]
    stages = [r.stage for r in run_passes(g, disable=("simplify",)).summary.rows]
    assert stages == ["cse", "fold", "loop_prune", "loop_hoist", "loop_accumulate", "stabilize", "dce"]
    assert_same(g, g2, {"x": np.arange(3, dtype=np.float32)})


def test_unknown_pass_name_lists_valid_ones():
    with gc.Graph("d") as g:
        x = g.input("x", (3,))
        g.output("y", x * 1.0)
    with pytest.raises(GraphcError, match=r"unknown optimization pass 'fuse'.*valid passes: cse, fold"):
        optimize(g, disable=("fuse",))
    with pytest.raises(GraphcError, match="'nope'"):
        run_passes(g, passes=["dce", "nope"])


def test_trace_prints_graph_after_each_pass(capsys):
    with gc.Graph("t") as g:
        x = g.input("x", (3,))
        g.output("y", gc.neg(gc.neg(x)) + 0.0)
    optimize(g, verbose=True)
    out = capsys.readouterr().out
    for name in PASSES:
        assert f"== after {name}:" in out
    assert "graph t(x: f32[3])" in out
    assert out.rstrip().endswith("return y=x\n}".rstrip())
    lines = []
    optimize(g, trace=lines.append)
    assert len(lines) == len(PASSES) + 1 and lines[0].startswith("== input")
    text = str(run_passes(g).summary)
    assert text.splitlines()[0].split()[:2] == ["stage", "nodes"]
    assert "simplify" in text and text.splitlines()[-1].split() == ["total", "5", "1"]  # x, neg, neg, 0.0, add -> x


def test_summary_counts_and_kernel_rows():
    g = mlp_graph()
    res = run_passes(g)
    g2, s = res.graph, res.summary
    assert s["cse"].nodes_before == len(g.nodes)
    assert s["dce"].nodes_after == len(g2.nodes)
    for a, b in zip(s.rows, s.rows[1:]):
        assert a.nodes_after == b.nodes_before
    s.add("fusion", len(g2.nodes), len(g2.nodes), kernels_before=len(g2.nodes), kernels_after=4)
    assert "kernels" in str(s) and str(s).splitlines()[-2].split()[:2] == ["fusion", str(len(g2.nodes))]


def test_keep_extra_nodes():
    with gc.Graph("k") as g:
        x = g.input("x", (3,))
        a = gc.exp(x) * 1.0
        b = gc.sum(a)
        g.output("b", b)
    res = run_passes(g, keep=[a])
    g2, (a2,) = res.graph, res.kept
    assert a2.op == "exp" and "__graphc" not in "".join(g2.outputs)
    feeds = {"x": np.array([0.0, 1.0, 2.0], np.float32)}
    np.testing.assert_allclose(gc.run(g2, feeds, outputs=a2), np.exp(feeds["x"]), rtol=1e-6)


# -- DCE --------------------------------------------------------------------------------------------
def test_dce_keeps_only_what_roots_need_and_every_variable():
    with gc.Graph("dce") as g:
        x = g.input("x", (3,))
        unused_in = g.input("unused", (2,))
        p = g.param("p", (3,))
        dead = gc.exp(x) + gc.log(x)  # noqa: F841
        g.output("y", x * 2.0)
    g2 = dce(g)
    assert len(g.nodes) == 8 and len(g2.nodes) == 5  # x, unused, p, const 2, mul
    assert set(g2.inputs) == {"x", "unused"} and set(g2.params) == {"p"}
    assert g2.inputs["unused"] is not unused_in and g2.params["p"].graph is g2
    assert_same(g, g2, {"x": np.ones(3, np.float32), "unused": np.ones(2, np.float32)})
    assert p.name in g2.params


def test_dce_keeps_phase_tags_without_keeping_removed_forward_nodes():
    with gc.Graph("m") as g:
        x = g.input("x", (3,))
        e = gc.exp(x)
        loss = gc.sum(e)
        g.output("gx", gc.grad(loss, x))  # the loss itself is not an output
    g2 = dce(g)
    # the sum is dead: nothing is kept alive to anchor its backward nodes (once, forward_of did)
    assert "sum" not in [n.op for n in g2.nodes]
    bwd = [n for n in g2.nodes if n.is_backward]
    assert bwd and all(n.phase is Phase.BACKWARD for n in bwd)
    # labels of kept forward nodes follow their new ids; removed ones say so
    assert {n.grad_of for n in bwd} == {"sum (removed)", e.label}
    assert_same(g, g2, {"x": np.array([0.0, 1.0, -1.0], np.float32)})


def test_rewrite_renames_grad_of_labels_to_the_new_ids():
    with gc.Graph("m") as g:
        x = g.input("x", (3,))
        dead = gc.log(x)  # noqa: F841  (shifts every later id by one in the copy)
        e = gc.exp(x)
        loss = gc.sum(e)
        g.output("loss", loss)
        g.output("gx", gc.grad(loss, x))
    g2 = dce(g)
    assert e.label == "exp#2" and g2.outputs["loss"].inputs[0].label == "exp#1"
    assert {n.grad_of for n in g2.nodes if n.is_backward} == {"sum#2", "exp#1"}
    assert "# bwd of %1" in g2.text() and "# bwd of %2" in g2.text()  # exp#1 and sum#2 in the copy


# -- CSE --------------------------------------------------------------------------------------------
def test_cse_merges_duplicates_and_commuted_operands():
    with gc.Graph("cse") as g:
        x = g.input("x", (3,))
        y = g.input("y", (3,))
        a = gc.tanh(x) * gc.tanh(x)
        b = gc.tanh(x) * gc.tanh(x)
        g.output("s", a + b + (x + y) + (y + x))
    g2 = dce(cse(g))
    assert live_ops(g) == ["tanh", "tanh", "mul", "tanh", "tanh", "mul", "add", "add", "add", "add", "add"]
    assert live_ops(g2) == ["tanh", "mul", "add", "add", "add", "add"]
    assert_same(g, g2, {"x": rng.standard_normal(3).astype("f4"), "y": rng.standard_normal(3).astype("f4")})


def test_cse_merges_equal_constants_but_not_different_attrs():
    with gc.Graph("c") as g:
        x = g.input("x", (2, 3))
        g.output("a", gc.sum(x, 0) + 2.0)
        g.output("b", gc.sum(x, 1, keepdims=True) + 2.0)
        g.output("c", gc.sum(x, 0) * 3.0)
    g2 = dce(cse(g))
    assert [n.op for n in g2.nodes].count("const") == 2  # 2.0 twice -> once; 3.0
    assert live_ops(g2) == ["sum", "add", "sum", "add", "mul"]
    assert_same(g, g2, {"x": rng.standard_normal((2, 3)).astype("f4")})


def test_cse_never_merges_random_ops():
    from graphc.ops.registry import get

    opdef = get("tanh")
    old = opdef.random
    try:
        opdef.random = True  # stand-in for a random op (dropout, normal)
        with gc.Graph("r") as g:
            x = g.input("x", (3,))
            g.output("y", gc.tanh(x) + gc.tanh(x))
        assert live_ops(dce(cse(g))) == ["tanh", "tanh", "add"]
        assert live_ops(dce(fold(g))) == ["tanh", "tanh", "add"]
    finally:
        opdef.random = old


# -- constant folding -----------------------------------------------------------------------------
def test_fold_evaluates_constant_subgraphs():
    with gc.Graph("f") as g:
        x = g.input("x", (3,))
        c = gc.exp(gc.constant(np.array([0.0, 1.0, 2.0]))) * 2.0 - 1.0
        g.output("y", x * c)
    g2 = dce(fold(g))
    assert live_ops(g2) == ["mul"]
    (k,) = [n for n in g2.live_nodes() if n.op == "const"]
    np.testing.assert_allclose(k.attrs["value"], np.exp([0.0, 1.0, 2.0]) * 2 - 1, rtol=1e-6)
    assert_same(g, g2, {"x": np.array([1.0, 2.0, 3.0], np.float32)})


def test_fold_skips_non_finite_and_large_results():
    with gc.Graph("f") as g:
        x = g.input("x", (3,))
        inf = gc.log(gc.constant(np.array([0.0, 1.0, 2.0])))  # log(0) = -inf: not folded
        big = gc.broadcast_to(gc.constant(1.0), (100, 100))  # 10000 elements: over the limit
        small = gc.broadcast_to(gc.constant(1.0), (2, 3))
        g.output("a", x + inf)
        g.output("b", gc.sum(big) + x)
        g.output("c", gc.sum(small) + x)
    g2 = dce(fold(g))
    assert live_ops(g2) == ["log", "broadcast_to", "add", "sum", "add", "add"]  # small and its sum fold
    assert_same(g, g2, {"x": np.ones(3, np.float32)})


def test_optimize_leaves_the_input_graph_untouched():
    g = mlp_graph()
    nodes, outputs, text = list(g.nodes), dict(g.outputs), g.text()
    g2 = optimize(g)
    assert g.nodes == nodes and g.outputs == outputs and g.text() == text
    assert all(n.graph is g2 for n in g2.nodes)


def test_optimize_rejects_non_graphs():
    class Wrapper:
        graph = mlp_graph()

    with pytest.raises(gc.errors.GraphStructureError, match=r"expected a Graph, got Wrapper \(pass its .graph\)"):
        optimize(Wrapper())
    with gc.Graph("other") as other:
        z = other.input("z", (2,))
    with pytest.raises(gc.errors.GraphStructureError, match="keep must hold nodes of graph 'mlp'"):
        run_passes(mlp_graph(), keep=[z])


def test_optimize_returns_a_plain_graph_and_run_passes_a_typed_result():
    """Nothing is attached to a Graph after the fact: the summary and kept nodes live on Optimized."""
    g = mlp_graph()
    g2 = optimize(g)
    assert type(g2) is gc.Graph and not hasattr(g2, "summary") and not hasattr(g2, "kept")
    res = run_passes(g, keep=[g.outputs["loss"]])
    assert isinstance(res, Optimized) and isinstance(res.graph, gc.Graph)
    assert not hasattr(res.graph, "summary") and "__graphc" not in "".join(res.graph.outputs)
    assert res.kept == [res.graph.outputs["loss"]]
    assert [r.stage for r in res.summary.rows] == list(PASSES)
    assert res.summary["dce"].nodes_after == len(res.graph.nodes) == len(g2.nodes)
    with pytest.raises(TypeError, match="keep"):
        optimize(g, keep=[g.outputs["loss"]])  # keep's new nodes only reach the caller through run_passes
