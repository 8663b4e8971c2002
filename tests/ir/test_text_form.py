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
  %0: f32[batch,2] = matmul(x, dense/w)                          # dense
  %1: f32[batch,2] = add(%0, dense/b)                            # dense
  %2: f32[batch,2] = relu(%1)                                    # dense
  %3: f32[batch,2] = mul(%2, 0.5)
  %4: f32[] = sum(%3, axes=(0, 1), keepdims=False)"""
BACKWARD = """\
  %5: f32[1,1] = reshape(1.0, shape=(1, 1))                      # bwd of %4
  %6: f32[batch,2] = broadcast_to(%5, shape=('batch', 2))        # bwd of %4
  %7: f32[batch,2] = mul(%6, 0.5)                                # bwd of %3
  %8: bool[batch,2] = greater(%1, 0.0)                           # bwd of %2; dense
  %9: f32[batch,2] = where(%8, %7, 0.0)                          # bwd of %2; dense
  %10: f32[3,batch] = transpose(x, perm=(1, 0))                  # bwd of %0; dense
  %11: f32[3,2] = matmul(%10, %9)                                # bwd of %0; dense"""


def test_full_text_is_exact():
    g, _ = small_graph()
    assert g.text() == "\n".join([HEAD, FORWARD, BACKWARD, "  return loss=%4, gw=%11", "}"])
    assert str(g) == g.text()


def test_backward_only_text():
    g, _ = small_graph()
    assert g.text(backward=True) == "\n".join([HEAD, BACKWARD, "  return loss=%4, gw=%11", "}"])


def test_text_of_roots_keeps_only_what_they_need():
    g, loss = small_graph()
    assert g.text([loss]) == "\n".join([HEAD, FORWARD, "  return loss=%4", "}"])


def test_text_is_stable_across_rebuilds_and_shows_updates_and_dtypes():
    texts = {small_graph()[0].text() for _ in range(2)}
    assert len(texts) == 1
    with gc.Graph("upd") as g:
        n = g.input("n", (2,), "int64")
        s = g.variable("s", (2,), dtype="float64")
        g.update("s", s + n.astype("float64"))
    assert g.text() == "\n".join([
        "graph upd(n: i64[2]) params(s: f64[2]) {",
        "  %0: f64[2] = cast(n, dtype='float64')",
        "  %1: f64[2] = add(s, %0)",
        "  update s <- %1",
        "}",
    ])  # fmt: skip
