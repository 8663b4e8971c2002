"""Phase tags: forward, backward (with the label of what it differentiates) or update, as data on nodes."""

import json

import numpy as np
import pytest

import graphc as gc
from graphc.ir import Phase
from graphc.viz import render as viz


def sgd_graph():
    with gc.Graph("ph") as g:
        x = g.input("x", (4, 3))
        with g.scope("dense"):
            w = g.param("w", (3, 2))
            h = gc.tanh(x @ w)
        loss = gc.mean(h * h)
    tg = gc.training_graph(loss, gc.optim.SGD(lr=0.1))
    return g, tg, x, w, h, loss


def test_every_node_has_a_phase_and_updates_are_not_backward():
    g, tg, x, w, h, loss = sgd_graph()
    gw = tg.grads["dense/w"]
    update = g.updates["dense/w"]
    assert (x.phase, w.phase, h.phase, loss.phase) == (Phase.FORWARD,) * 4
    assert gw.phase is Phase.BACKWARD and gw.is_backward and gw.grad_of == h.inputs[0].label
    assert update.phase is Phase.UPDATE and not update.is_backward and update.grad_of is None
    assert update.role == "update" and gw.role == "backward" and h.role == "forward"
    assert update.scope == "sgd" and gw.scope == "dense"  # an update sits in the optimizer's scope
    step = g.params["sgd/step"]  # optimizer state is a source: forward, wherever it is declared
    assert step.phase is Phase.FORWARD and step.role == "state"
    assert {n.phase for n in g.nodes} == set(Phase)


def test_graph_phase_block_tags_nodes_and_backward_of_places_them():
    with gc.Graph() as g:
        x = g.input("x", (2,))
        y = gc.exp(x)
        with g.phase(Phase.UPDATE):
            u = y * 2.0
            v = g.input("v", (2,))  # declared inputs stay forward
        z = y + 1.0
    assert (u.phase, v.phase, z.phase) == (Phase.UPDATE, Phase.FORWARD, Phase.FORWARD)
    with pytest.raises(gc.AttributeValueError, match=r"^phase: expected a graphc.ir.Phase \(FORWARD, BACKWARD or "
                       r"UPDATE\), got 'update' \(declared at .*test_phase.py:\d+\)"):  # fmt: skip
        with g.phase("update"):
            pass


def test_text_form_notes_backward_and_update_nodes():
    g, tg, x, w, h, loss = sgd_graph()
    text = g.text()
    lines = {ln.split(":")[0].strip(): ln for ln in text.splitlines() if ln.startswith("  %")}
    upd = [ln for ln in lines.values() if ln.rstrip().endswith("# update; sgd")]
    assert upd, text
    assert any("# bwd of %3; dense" in ln for ln in lines.values())  # tanh is %3, node 3
    bwd = tg.backward_text()
    assert "# update; sgd" in bwd and "# bwd of" in bwd


def test_drawings_colour_update_nodes_by_their_phase():
    g, tg, x, w, h, loss = sgd_graph()
    src = viz.build(g).source
    upd_inner = [n for n in g.live_nodes() if n.phase is Phase.UPDATE and n.inputs and n not in g.updates.values()]
    assert upd_inner
    line = next(ln for ln in src.splitlines() if ln.strip().startswith(f"n{upd_inner[0].id} "))
    assert viz.STYLE["update"]["fillcolor"] in line and "update" in line
    gw = tg.grads["dense/w"]
    line = next(ln for ln in src.splitlines() if ln.strip().startswith(f"n{gw.id} "))
    assert f"backward of %{h.inputs[0].id}" in line  # the forward value (x @ w) named as the text form does


def test_graph_file_keeps_phases_and_reads_version_1_forward_of(tmp_path):
    g, tg, x, w, h, loss = sgd_graph()
    g.save(tmp_path / "g.json")
    h2 = gc.load_graph(tmp_path / "g.json")
    assert [(n.phase, n.grad_of) for n in h2.nodes] == [(n.phase, n.grad_of) for n in g.nodes]
    # A file of the previous version: "forward_of" node ids, no phase (updates were backward then).
    doc = json.loads((tmp_path / "g.json").read_text())
    doc["version"] = 1
    for spec in doc["nodes"]:
        phase, grad_of = spec.pop("phase"), spec.pop("grad_of")
        fwd = next((i for i, s in enumerate(doc["nodes"]) if (s.get("name") or f"{s['op']}#{i}") == grad_of), None)
        spec["forward_of"] = fwd if phase == "backward" else (-1 if phase == "update" else None)
    (tmp_path / "old.json").write_text(json.dumps(doc))
    old = gc.load_graph(tmp_path / "old.json")
    for a, b in zip(old.nodes, g.nodes):
        assert a.phase is (Phase.BACKWARD if b.phase is not Phase.FORWARD else Phase.FORWARD)
        assert a.grad_of == b.grad_of
    doc["nodes"][5]["forward_of"] = 999
    (tmp_path / "old.json").write_text(json.dumps(doc))
    with pytest.raises(gc.GraphFileError, match=r"old.json: corrupt graph file: forward_of 999 is not a node"):
        gc.load_graph(tmp_path / "old.json")


def test_nodes_run_the_same_whatever_their_phase():
    g, tg, x, w, h, loss = sgd_graph()
    before = g.values["dense/w"].copy()
    xv = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    gw = gc.run(g, {"x": xv}, outputs=tg.grads["dense/w"])
    tg.compile("numba")({"x": xv})
    np.testing.assert_allclose(g.values["dense/w"], before - 0.1 * gw, rtol=1e-5)
