"""The drawings' views, read from the DOT they generate: parts, roles and colours, gradients paired
with their parameters, saved activations, kernels inside layers, collapsed layers, the node cap,
loops; with dot, the layout of the demo's and a deep MLP's collapsed training steps."""

import re

import pytest

import graphc as gc
from graphc import nn
from graphc.errors import AttributeValueError
from graphc.viz import render as viz
from graphc.viz.style import STYLE
from tests.viz import dotread
from tests.viz.dotread import HAVE_DOT

FILL = {role: s["fillcolor"] for role, s in STYLE.items()}


def demo_cnn():
    """The CNN of `graphc demo` (graphc/cli/demo.py: demo_network), its Adam optimizer with a cosine
    schedule, and model."""
    net = nn.Sequential([
        nn.Conv2D(32, 3, padding=1), nn.BatchNorm2D(), nn.Activation("relu"), nn.MaxPool2D(2),
        nn.Conv2D(64, 3, padding=1), nn.BatchNorm2D(), nn.Activation("relu"), nn.MaxPool2D(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Dense(128, activation="relu"), nn.Dropout(0.3), nn.Dense(10),
    ], name="cnn")  # fmt: skip
    optimizer = nn.optim.Adam(lr=5e-3, schedule=nn.schedules.CosineDecay(680))
    return nn.Model(net, input_shape=(1, 8, 8), loss="cross_entropy", optimizer=optimizer, backend="numba",
                    name="digits_cnn")  # fmt: skip


DEMO_LAYERS = ["conv2d", "batch_norm", "relu", "max_pool2d", "conv2d_1", "batch_norm_1", "relu_1", "max_pool2d_1",
               "flatten", "dropout", "dense", "dropout_1", "dense_1"]  # fmt: skip


def deep_mlp(layers=50):
    net = nn.Sequential([*(nn.Dense(32, activation="relu") for _ in range(layers - 1)), nn.Dense(10)], name="mlp")
    return nn.Model(net, input_shape=16, optimizer=nn.optim.Adam(1e-3), backend="reference", name="deep_mlp")


@pytest.fixture(scope="module")
def demo():
    return demo_cnn()


def mlp_training_graph():
    with gc.Graph("mlp") as g:
        x = g.input("x", ("batch", 4))
        y = g.input("y", ("batch",), "int64")
        h = nn.Dense(8, activation="tanh")(x, training=True)
        loss = nn.losses.cross_entropy(nn.Dense(3)(h, training=True), y)
    tg = nn.training_graph(loss, nn.optim.Adam(1e-2))
    g.output("loss", loss)
    return g, tg, h, loss


def box_label(attrs) -> str:
    return attrs["label"].replace("\\n", "\n")


# -- views and meaning --------------------------------------------------------------------------
def test_the_training_step_lays_out_forward_backward_and_updates_apart():
    g, tg, h, loss = mlp_training_graph()
    d = dotread.read(viz.dot_source(tg, legend=False))
    parts = {c["label"]: set(c["nodes"]) for c in d.clusters.values() if c["parent"] is None}
    assert set(parts) == {"forward pass", "backward pass (gradients)", "parameter updates"}

    def inside(label):  # nodes of a top-level cluster and of the clusters inside it
        top = next(cid for cid, c in d.clusters.items() if c["label"] == label and c["parent"] is None)
        return {n for n in d.nodes if d.nodes[n]["cluster_id"] and _under(d, d.nodes[n]["cluster_id"], top)}

    fwd, bwd, upd = inside("forward pass"), inside("backward pass (gradients)"), inside("parameter updates")
    assert all(d.nodes[n]["fillcolor"] not in (FILL["backward"], FILL["gradient"]) for n in fwd)
    assert all(d.nodes[n]["fillcolor"] in (FILL["backward"], FILL["gradient"]) for n in bwd)
    assert f"n{loss.id}" in fwd and d.nodes[f"n{loss.id}"]["fillcolor"] == FILL["loss"]
    # one update box per parameter (Adam's moments and arithmetic folded), plus the shared step counter
    assert len(upd) == len(tg.params) + 1 and "upd_shared" in upd
    for name, u in tg.updates.items():
        if name in tg.params:
            assert f"update {name}" in box_label(d.nodes[f"n{u.id}"])
    # gradients flow back up: every edge between two backward nodes is written reversed (dir=back)
    grad_edges = [e for e in d.edges if e[0] in bwd and e[1] in bwd]
    assert grad_edges and all(e[2].get("dir") == "back" for e in grad_edges)


def _under(d, cid, top) -> bool:
    while cid is not None:
        if cid == top:
            return True
        cid = d.clusters[cid]["parent"]
    return False


def test_every_parameter_is_paired_with_its_gradient_and_saved_activations_are_marked():
    g, tg, h, loss = mlp_training_graph()
    d = dotread.read(viz.dot_source(tg))
    for name, p in tg.params.items():
        gnode = tg.grads[name]
        attrs = d.nodes[f"n{gnode.id}"]
        assert f"∇ {name}" in attrs["label"] and attrs["fillcolor"] == FILL["gradient"]
        assert (f"n{p.id}", f"n{gnode.id}") in {(a, b) for a, b, _ in d.edges}  # the pairing edge
        assert d.nodes[f"n{p.id}"]["fillcolor"] == FILL["param"]
    # tanh's output is read by its gradient: red border, red dashed edge into the backward pass
    assert "saved for backward" in d.nodes[f"n{h.id}"]["label"] and d.nodes[f"n{h.id}"]["color"] == "#d62728"
    saved = [e for e in d.edges if e[0] == f"n{h.id}" and e[2].get("style") == "dashed"]
    assert saved and all(e[2]["color"] == "#d62728" for e in saved)
    # the legend names every role drawn
    legend = [a["label"] for n, a in d.nodes.items() if n.startswith("legend_")]
    for text in ("input", "parameter", "forward op", "loss", "backward op", "gradient", "update", "saved"):
        assert any(text in label for label in legend), text


def test_gradients_named_as_outputs_are_paired_with_their_parameters():
    with gc.Graph("g") as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 2))
        v = g.param("v", (2, 2))
        h = gc.tanh(x @ w)
        loss = gc.mean((h @ v) * h)  # h read twice: w's gradient sums two contributions
        g.output("loss", loss)
    for p, gr in zip((w, v), gc.grad(loss, [w, v])):
        g.output(f"d/{p.name}", gr)
    d = dotread.read(viz.dot_source(g))
    for p in (w, v):
        gr = g.outputs[f"d/{p.name}"]
        assert f"∇ {p.name}" in d.nodes[f"n{gr.id}"]["label"] and d.nodes[f"n{gr.id}"]["fillcolor"] == FILL["gradient"]
        assert (f"n{p.id}", f"n{gr.id}") in {(a, b) for a, b, _ in d.edges}


def test_optimizer_internals_unfolded_on_request():
    g, tg, h, loss = mlp_training_graph()
    folded = dotread.read(viz.dot_source(tg))
    full = dotread.read(viz.dot_source(tg, fold_updates=False, max_nodes=None))
    state = [n for n in tg.state_names if n != "adam/step"]
    assert not any(s in a["label"] for s in state for a in folded.drawn().values() if a["label"].startswith(s))
    assert all(any(a["label"].startswith(s) for a in full.drawn().values()) for s in state)
    assert len(full.drawn()) > len(folded.drawn()) + 20


def test_shapes_on_edges_by_default_and_off_on_request():
    g, tg, h, loss = mlp_training_graph()
    on = dotread.read(viz.dot_source(tg))
    off = dotread.read(viz.dot_source(tg, shapes=False))
    assert any(e[2].get("label") == "f32[batch,8]" for e in on.edges)
    assert not any(re.match(r"[a-z]+\d*\[", e[2].get("label", "")) for e in off.edges)
    assert "f32[batch,8]" in off.nodes[f"n{h.id}"]["label"]  # the type moves into the node
    assert any(n.startswith("legend_") for n in on.nodes)
    assert not any(n.startswith("legend_") for n in dotread.read(viz.dot_source(tg, legend=False)).nodes)


def test_forward_and_backward_views():
    g, tg, h, loss = mlp_training_graph()
    fwd = dotread.read(viz.dot_source(tg, view="forward"))
    bwd = dotread.read(viz.dot_source(tg, view="backward"))
    assert not fwd.role_nodes(FILL["backward"]) and not fwd.role_nodes(FILL["gradient"])
    assert fwd.graph["label"] == "mlp (forward)" and bwd.graph["label"] == "mlp (backward)"
    assert bwd.role_nodes(FILL["gradient"]) and f"n{h.id}" in bwd.nodes  # a value the backward pass reads


def test_a_compiled_step_is_drawn_after_its_passes_unless_asked(tmp_path):
    with gc.Graph("p") as g:
        x = g.input("x", ("batch", 3))
        g.output("y", gc.tanh(x) * (gc.constant(2.0) - 1.0))
    step = gc.compile(g, "numba")
    after = viz.dot_source(step)
    before = viz.dot_source(step, passes=False)
    assert "= sub(2.0, 1.0)" in before and "= sub(" not in after
    assert "kernel" in after and "kernel" not in before
    assert "= sub(2.0, 1.0)" in viz.dot_source(g) and "= sub(" not in viz.dot_source(g, passes=True)


def test_conv_bias_relu_kernel_is_one_cluster_of_three_ops_inside_its_layer():
    with gc.Graph("cbr") as g:
        x = g.input("x", ("batch", 2, 6, 6))
        g.output("y", nn.Conv2D(3, 3, padding=1, activation="relu")(x, training=False))
    step = gc.compile(g, "numba")
    d = dotread.read(viz.dot_source(step))
    kernels = [c for c in d.clusters.values() if (c["label"] or "").startswith("kernel ")]
    cbr = [c for c in kernels if "conv2d" in c["label"] and "relu" in c["label"]]
    assert len(cbr) == 1 and len(cbr[0]["nodes"]) == 3
    ops = sorted(re.search(r" = (\w+)", d.nodes[n]["label"]).group(1) for n in cbr[0]["nodes"])
    assert ops == ["add", "conv2d", "relu"]
    assert d.cluster_path(cbr[0]["nodes"][0])[:-1] == ["conv2d"]  # the kernel inside its layer's cluster


# -- collapsed views, the cap -------------------------------------------------------------------
def test_the_demo_collapsed_training_step_has_one_box_per_layer(demo):
    d = dotread.read(viz.dot_source(demo, collapse=True))
    boxes = {box_label(a).split("\n")[0]: a for n, a in d.drawn().items() if n.startswith("box")}
    forward = [k for k, a in boxes.items() if k.startswith("cnn/")]
    backward = [k for k in boxes if k.startswith("∇ cnn/")]
    assert forward == [f"cnn/{x}" for x in DEMO_LAYERS]
    assert sorted(backward) == sorted(f"∇ cnn/{x}" for x in DEMO_LAYERS)
    updates = [k for k in boxes if k.startswith("update ")]
    assert sorted(u.split()[1] for u in updates) == sorted(demo.graph.trainable())
    assert len(d.nodes) <= 80
    conv = box_label(boxes["cnn/conv2d"])
    assert "params: w f32[32,1,3,3], b f32[32]" in conv and "conv2d" in conv.split("\n")[1]
    assert re.search(r"\nkernels: k\d+_reshape,\nk\d+_conv2d_add$", conv)  # the fused kernels the layer runs in
    assert "gradients: ∇w f32[32,1,3,3], ∇b f32[32]" in box_label(boxes["∇ cnn/conv2d"])
    assert "saves" in box_label(boxes["cnn/relu"]) and boxes["cnn/relu"]["color"] == "#d62728"
    assert "state: running_mean, running_var" in box_label(boxes["cnn/batch_norm"])
    assert boxes["train/loss"]["fillcolor"] == FILL["loss"]
    # the fused kernels each parameter's update runs in (the weight gradient's matmul fused with Adam's arithmetic)
    assert re.search(
        r"\nkernels: k\d+_matmul_mul_add_div_sqrt_sub$", box_label(boxes["update cnn/dense/w f32[256,128]"])
    )


def test_expand_opens_one_layer(demo):
    d = dotread.read(viz.dot_source(demo, expand="conv2d_1"))
    firsts = [box_label(a).split("\n")[0] for n, a in d.drawn().items() if n.startswith("box")]
    assert "cnn/conv2d" in firsts and "cnn/conv2d_1" not in firsts and "∇ cnn/conv2d_1" not in firsts
    opened = [c for c in d.clusters.values() if (c["label"] or "").startswith("cnn/conv2d_1 (")]
    assert {c["label"] for c in opened} == {"cnn/conv2d_1 (forward, expanded)", "cnn/conv2d_1 (backward, expanded)"}
    assert any(" = conv2d\\n" in d.nodes[n]["label"] for c in opened for n in c["nodes"])
    with pytest.raises(AttributeValueError, match=r"^render: expand='conv3' is not a layer of this drawing; "
                                                  r"expected one of 'cnn/conv2d', 'cnn/batch_norm', "):  # fmt: skip
        viz.dot_source(demo, expand="conv3")


def test_a_drawing_past_the_node_cap_is_summarised(demo):
    full = dotread.read(viz.dot_source(demo, max_nodes=None))
    assert len(full.drawn()) > 150
    # a kernel spanning two layers (batch norm's scale and shift fused with the ReLU) names both and
    # sits in their common scope's cluster, inside the forward pass
    spanning = [c for c in full.clusters.values() if "(layers cnn/batch_norm, cnn/relu)" in (c["label"] or "")]
    forward = [c for c in spanning if ": div, mul, add, relu" in c["label"]]  # and the backward's where+sum
    assert len(spanning) == 2 and len(forward) == 1
    assert full.cluster_path(forward[0]["nodes"][0])[:-1] == ["forward pass", "cnn"]
    capped = dotread.read(viz.dot_source(demo))  # the default cap: collapsed instead of a wall
    assert len(capped.nodes) <= viz.MAX_NODES and "summarised: one box per layer" in capped.graph["label"]
    tiny = dotread.read(viz.dot_source(demo, max_nodes=5))
    assert list(tiny.nodes) == ["summary"] and "max_nodes=None" in tiny.nodes["summary"]["label"]


def test_a_deep_mlp_folds_its_alike_layers():
    d = dotread.read(viz.dot_source(deep_mlp(), collapse=True, max_nodes=80))
    assert len(d.nodes) <= 80
    firsts = [box_label(a).split("\n")[0] for n, a in d.drawn().items() if n.startswith("box")]
    assert "mlp/dense_2 … mlp/dense_47  (46 layers alike, folded)" in firsts
    assert {"mlp/dense", "mlp/dense_1", "mlp/dense_48", "mlp/dense_49"} <= set(firsts)
    labels = {box_label(a).split("\n")[0]: box_label(a) for n, a in d.drawn().items() if n.startswith("box")}
    assert (
        "params per layer: w f32[32,32], b f32[32]\n" in labels["mlp/dense_2 … mlp/dense_47  (46 layers alike, folded)"]
    )
    folded_update = labels["update 92 params of mlp/dense_2 … mlp/dense_47"]
    assert folded_update.endswith("\nstate: m, v")
    assert labels["update mlp/dense_48/w f32[32,32]"].endswith("\nstate: m, v")


@pytest.mark.skipif(not HAVE_DOT, reason="needs the Graphviz dot program to lay the drawing out")
@pytest.mark.parametrize("make", ["demo", "mlp"])
def test_collapsed_training_steps_fit_and_no_edge_labels_overlap(demo, make):
    model = demo if make == "demo" else deep_mlp()
    j = dotread.layout(viz.dot_source(model, collapse=True, max_nodes=80))
    width, height = dotread.size_pt(j)
    assert width <= 3000 and height <= 3000, (width, height)
    assert len(dotread.label_boxes(j)) > 10
    assert dotread.overlapping_labels(j) == []


# -- loops --------------------------------------------------------------------------------------
def rnn_graph():
    with gc.Graph("rnn") as g:
        xs = g.input("xs", (5, "batch", 3))
        with g.scope("rnn"):
            w = g.param("w", (3, 4))
            u = g.param("u", (4, 4))

            def step(h, x):
                h = gc.tanh(x @ w + h @ u)
                return h, h

            _, hs = gc.scan(step, gc.zeros_like(xs[0] @ w), xs)
        loss = gc.mean(hs)
        g.output("loss", loss)
    for name, gr in zip(("gw", "gu"), gc.grad(loss, [w, u])):
        g.output(name, gr)
    return g


def test_a_scan_body_is_drawn_once_with_a_back_edge_forward_and_reverse():
    d = dotread.read(viz.dot_source(rnn_graph()))
    loops = {cid: c for cid, c in d.clusters.items() if "scan ×5" in (c["label"] or "")}
    labels = sorted(re.search(r"(?:reverse )?scan ×5  \(t = [^)]*\)", c["label"]).group(0) for c in loops.values())
    assert labels == ["reverse scan ×5  (t = T-1 … 0)", "scan ×5  (t = 0 … T-1)"]
    for c in loops.values():
        inside = set(c["nodes"])
        back = [e for e in d.edges if {e[0], e[1]} <= inside and "next step" in e[2].get("label", "")]
        carries = 3 if "reverse scan" in c["label"] else 1
        assert len(back) == carries and all(e[2]["label"] == "next step ×5" for e in back)
        tanh = [n for n in c["nodes"] if d.nodes[n]["label"].startswith("tanh")]
        assert len(tanh) == 1  # the body once, not unrolled
    fwd_loop = next(c for c in loops.values() if "reverse" not in c["label"])
    assert d.nodes[next(n for n in fwd_loop["nodes"] if "tanh" in d.nodes[n]["label"])]["fillcolor"] == FILL["forward"]
    rev = next(c for c in loops.values() if "reverse" in c["label"])
    assert d.nodes[next(n for n in rev["nodes"] if "tanh" in d.nodes[n]["label"])]["fillcolor"] == FILL["backward"]
    assert any("loop body" in a["label"] for n, a in d.nodes.items() if n.startswith("legend"))
    # collapsed, the layer's boxes name the loops with their trip counts
    c = dotread.read(viz.dot_source(rnn_graph(), collapse=True))
    labels = [a["label"] for n, a in c.drawn().items() if n.startswith("box")]
    assert any(lb.startswith("rnn\\n") and "scan ×5" in lb for lb in labels)
    assert any(lb.startswith("∇ rnn\\n") and "reverse scan ×5" in lb for lb in labels)


# -- formats ------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_DOT, reason="needs the Graphviz dot program")
def test_svg_png_pdf_of_a_model(tmp_path, demo):
    for suffix, magic in (("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")):
        gv, image = gc.render(demo, tmp_path / f"train.{suffix}", collapse=True)
        assert image.read_bytes().startswith(magic) and gv.suffix == ".gv"
