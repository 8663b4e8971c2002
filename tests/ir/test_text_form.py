"""The text form is stable: tests and users can assert on it exactly."""

import graphc as gc


def small_graph():
    with gc.Graph("small") as g:
        x = g.input("x", ("batch", 3))
        with g.scope("dense"):
            w = g.param("w", (3, 2))
            b = g.param("b", (2,), init="zeros")
            h = gc.relu(x @ w + b)
        loss = gc.sum(h * 0.5)
        g.output("loss", loss)
    g.output("gw", gc.grad(loss, w))
    return g, loss


HEAD = "graph small(x: f32[batch,3]) params(dense/w: f32[3,2], dense/b: f32[2]) {"
FORWARD = """\
  %3: f32[batch,2] = matmul(x, dense/w)                          # dense
  %4: f32[batch,2] = add(%3, dense/b)                            # dense
  %5: f32[batch,2] = relu(%4)                                    # dense
  %7: f32[batch,2] = mul(%5, 0.5)
  %8: f32[] = sum(%7, axes=(0, 1), keepdims=False)"""
BACKWARD = """\
  %10: f32[1,1] = reshape(1.0, shape=(1, 1))                     # bwd of %8
  %11: f32[batch,2] = broadcast_to(%10, shape=('batch', 2))      # bwd of %8
  %12: f32[batch,2] = mul(%11, 0.5)                              # bwd of %7
  %14: bool[batch,2] = greater(%4, 0.0)                          # bwd of %5; dense
  %16: f32[batch,2] = where(%14, %12, 0.0)                       # bwd of %5; dense
  %17: f32[3,batch] = transpose(x, perm=(1, 0))                  # bwd of %3; dense
  %18: f32[3,2] = matmul(%17, %16)                               # bwd of %3; dense"""


def test_full_text_is_exact():
    g, _ = small_graph()
    assert g.text() == "\n".join([HEAD, FORWARD, BACKWARD, "  return loss=%8, gw=%18", "}"])
    assert str(g) == g.text()


def test_backward_only_text():
    g, _ = small_graph()
    assert g.text(backward=True) == "\n".join([HEAD, BACKWARD, "  return loss=%8, gw=%18", "}"])


def test_text_of_roots_keeps_only_what_they_need():
    g, loss = small_graph()
    assert g.text([loss]) == "\n".join([HEAD, FORWARD, "  return loss=%8", "}"])


def test_text_is_stable_across_rebuilds_and_shows_updates_and_dtypes():
    texts = {small_graph()[0].text() for _ in range(2)}
    assert len(texts) == 1
    with gc.Graph("upd") as g:
        n = g.input("n", (2,), "int64")
        s = g.variable("s", (2,), dtype="float64")
        g.update("s", s + n.astype("float64"))
    assert g.text() == "\n".join([
        "graph upd(n: i64[2]) params(s: f64[2]) {",
        "  %2: f64[2] = cast(n, dtype='float64')",
        "  %3: f64[2] = add(s, %2)",
        "  update s <- %3",
        "}",
    ])  # fmt: skip


def test_a_value_has_one_name_in_every_listing_in_labels_and_in_the_step_summary():
    """%N is the node's id: the same in the whole listing, the backward one and one from some
    roots (listings used to renumber %0, %1, ... each time), in `bwd of %N` notes, in the label
    errors use (op#N) and in step.summary()."""
    from graphc.ir.text import value_name

    g, loss = small_graph()
    relu = next(n for n in g.nodes if n.op == "relu")
    assert value_name(relu) == f"%{relu.id}" == "%5" and relu.label == "relu#5"
    assert g.text([relu]).splitlines()[-2].startswith("  %5: f32[batch,2] = relu(%4)  ")
    assert "  return loss=%8" in g.text([loss])
    lines = g.text().splitlines()
    for text in (g.text([relu]), g.text([loss]), g.text(backward=True)):
        assert {ln for ln in text.splitlines() if ln.startswith("  %")} <= set(lines)
    assert value_name(g.params["dense/w"]) == "dense/w" and value_name(g.nodes[6]) == "0.5"
    summary = gc.compile(g, "reference").summary().splitlines()
    assert summary[2].split()[0] == summary[2].split()[-1] == "relu#5"
