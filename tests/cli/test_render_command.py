"""`graphc render FILE.py|FILE.json`: every example's build() draws in every view, the options
reach the drawing, and each kind of bad input is one line naming the problem and the fix,
with exit status 1 and no traceback (issue 9, item 6 and "Bad input")."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import graphc as gc
from graphc.cli import main
from graphc.cli.loading import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
HAVE_DOT = shutil.which("dot") is not None


def render(capsys, *args):
    """(exit status, stdout lines, stderr) of `graphc render ARGS`."""
    status = main(["render", *map(str, args)])
    out = capsys.readouterr()
    return status, out.out.splitlines(), out.err


def one_error(capsys, *args) -> str:
    status, lines, err = render(capsys, *args)
    assert status == 1 and not lines, (status, lines, err)
    assert err.endswith("\n") and err.count("\n") == 1, err  # one line
    assert err.startswith("graphc render: error: ") and "Traceback" not in err
    return err.removeprefix("graphc render: error: ").rstrip("\n")


def write(tmp_path, name, text) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GRAPH_PY = """
import graphc as gc

def build():
    with gc.Graph("tiny") as g:
        x = g.input("x", ("batch", 3))
        with g.scope("dense"):
            w = g.param("w", (3, 2))
            h = gc.tanh(x @ w)
        loss = gc.sum(h)
        g.output("loss", loss)
    g.output("gw", gc.grad(loss, w))
    return g
"""


# -- every example --------------------------------------------------------------------------------
def test_every_example_defines_build_returning_something_to_draw():
    from graphc.backends.base import Executable
    from graphc.nn.model import Model
    from graphc.nn.training import TrainingGraph

    assert len(EXAMPLES) >= 7
    for path in EXAMPLES:
        obj = load(path)
        assert isinstance(obj, gc.Graph | TrainingGraph | Executable | Model), path


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_view_of_every_example_renders(path, tmp_path, capsys):
    """The DOT source always; with `dot`, an SVG of each view (train collapsed too)."""
    ext = "svg" if HAVE_DOT else "gv"
    for view, extra in (("forward", ()), ("backward", ()), ("train", ()), ("train", ("--collapse",))):
        out = tmp_path / f"{view}{'_'.join(extra)}.{ext}"
        status, lines, err = render(capsys, path, "--view", view, *extra, "-o", out)
        assert status == 0, err
        assert lines[-1] == f"wrote {out}"
        text = out.read_text()
        assert text.lstrip().startswith(("<?xml", "<svg") if HAVE_DOT else "digraph")


# -- options --------------------------------------------------------------------------------------
def test_views_shapes_passes_and_kernels_reach_the_drawing(tmp_path, capsys):
    src = write(tmp_path, "tiny.py", GRAPH_PY)

    def dot(*args):
        out = tmp_path / "d.gv"
        status, lines, err = render(capsys, src, *args, "-o", out)
        assert status == 0 and lines == [f"wrote {out}"], err
        return out.read_text()

    forward, backward = dot("--view", "forward"), dot("--view", "backward")
    assert "tanh" in forward and "hexagon" not in forward
    assert "hexagon" in backward  # backward ops
    edge_labels = re.compile(r"-> n\d+ \[.*label=")
    assert edge_labels.search(forward) and not edge_labels.search(dot("--view", "forward", "--no-shapes"))
    assert "cluster_kernel" not in forward
    fused = dot("--view", "train", "--fused")
    assert "kernel" in fused  # compiled for numba: its kernels drawn as clusters
    assert dot("--view", "train") == gc.viz.render.dot_source(load(src), view="train", kernels=[])


def test_passes_choose_the_graph_before_or_after_the_optimization_passes(tmp_path, capsys):
    src = write(tmp_path, "tiny.py", GRAPH_PY)
    out = tmp_path / "p.gv"
    assert render(capsys, src, "--passes", "-o", out)[0] == 0
    after = out.read_text()
    assert after == gc.dot_source(load(src), view="train", kernels=[], passes=True)
    assert render(capsys, src, "-o", out)[0] == 0
    assert out.read_text() != after  # a graph is drawn as declared by default
    model = ROOT / "examples" / "perceptron.py"
    assert render(capsys, model, "--no-passes", "-o", out)[0] == 0
    m = load(model)
    roots = [m.graph.outputs["train/loss"], *m.graph.updates.values()]
    assert out.read_text() == gc.dot_source(m.graph, view="train", kernels=[], roots=roots)
    assert "eval/" not in out.read_text()  # the training step only, not the evaluation outputs


def test_a_saved_graph_json_draws_like_the_graph(tmp_path, capsys):
    g = load(write(tmp_path, "tiny.py", GRAPH_PY))
    g.save(tmp_path / "tiny.json")
    out = tmp_path / "t.gv"
    status, lines, err = render(capsys, tmp_path / "tiny.json", "--view", "backward", "-o", out)
    assert status == 0, err
    assert out.read_text() == gc.viz.render.dot_source(g, view="backward", kernels=[])


def test_expand_opens_the_layer_it_names(tmp_path, capsys):
    src = write(tmp_path, "tiny.py", GRAPH_PY)
    out = tmp_path / "e.gv"
    status, _, err = render(capsys, src, "--expand", "dense", "-o", out)
    assert status == 0, err
    assert out.read_text() == gc.viz.render.dot_source(load(src), view="train", expand="dense", kernels=[])


def test_max_nodes_summarises_past_the_cap_and_0_draws_every_node(tmp_path, capsys):
    src = write(tmp_path, "tiny.py", GRAPH_PY)
    out = tmp_path / "m.gv"
    assert render(capsys, src, "--max-nodes", "5", "-o", out)[0] == 0
    assert out.read_text() == gc.dot_source(load(src), view="train", kernels=[], max_nodes=5)
    assert "more than max_nodes=5 nodes" in out.read_text()  # a note, not the drawing
    assert render(capsys, src, "--max-nodes", "0", "-o", out)[0] == 0
    assert out.read_text() == gc.dot_source(load(src), view="train", kernels=[], max_nodes=None)
    assert one_error(capsys, src, "--max-nodes", "-1") == "--max-nodes must be >= 0 (0: no cap), got -1"


def test_without_dot_the_source_is_written_with_a_one_line_note(tmp_path, capsys, monkeypatch):
    src = write(tmp_path, "tiny.py", GRAPH_PY)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    status, lines, err = render(capsys, src, "-o", tmp_path / "t.svg")
    assert status == 0 and lines == [f"wrote {tmp_path / 't.gv'}"]
    assert err.startswith("graphc render: note: render ") and err.count("\n") == 1
    assert "Install it with `apt-get install graphviz`" in err
    assert not (tmp_path / "t.svg").exists()


def test_a_build_file_can_define_dataclasses_and_import_its_neighbours(tmp_path, capsys):
    write(tmp_path, "helper.py", GRAPH_PY)
    src = write(tmp_path, "uses.py", "from __future__ import annotations\nfrom dataclasses import dataclass\n"
                "import helper\n\n\n@dataclass\nclass Spec:\n    width: int\n\n\n"
                "def build():\n    return helper.build()\n")  # fmt: skip
    status, _, err = render(capsys, src, "--view", "forward", "-o", tmp_path / "u.gv")
    assert status == 0, err


def test_default_output_is_named_after_the_file_and_the_view(tmp_path, capsys, monkeypatch):
    src = write(tmp_path, "tiny.py", GRAPH_PY)
    monkeypatch.chdir(tmp_path)
    status, lines, _ = render(capsys, src, "--view", "forward")
    assert status == 0 and "wrote tiny_forward.gv" in lines


# -- bad input: one line each, exit status 1 ------------------------------------------------------
def test_a_file_without_build(tmp_path, capsys):
    src = write(tmp_path, "nobuild.py", "x = 1\n")
    assert one_error(capsys, src) == (
        f"{src} defines no build(); add `def build():` returning a Graph, a training graph "
        "(nn.training_graph), a compiled step (gc.compile) or an nn.Model (see docs/drawings.md)"
    )


def test_a_build_that_raises_names_the_exception_and_its_line(tmp_path, capsys):
    src = write(tmp_path, "bad.py", "def build():\n    raise ValueError('no data\\nhere')\n")
    assert one_error(capsys, src) == (
        f"build() in {src} raised ValueError: no data here (at {src}:2); fix it so that it returns a Graph, "
        "a training graph (nn.training_graph), a compiled step (gc.compile) or an nn.Model"
    )


def test_a_build_that_returns_something_else(tmp_path, capsys):
    src = write(tmp_path, "num.py", "def build():\n    return 42\n")
    assert one_error(capsys, src).startswith(f"build() in {src} returned int; make it return a Graph, ")


def test_a_file_that_fails_to_import(tmp_path, capsys):
    src = write(tmp_path, "broken.py", "import graphc\nraise RuntimeError('boom')\n")
    assert one_error(capsys, src) == f"importing {src} raised RuntimeError: boom (at {src}:2); fix the file"
    src = write(tmp_path, "syntax.py", "def build(:\n")
    assert one_error(capsys, src).startswith(f"{src}:1: syntax error (")


def test_an_unknown_view(tmp_path, capsys):
    src = write(tmp_path, "tiny.py", GRAPH_PY)
    msg = one_error(capsys, src, "--view", "sideways")
    assert msg == "unknown view 'sideways'; use --view train, forward or backward"


def test_an_unknown_layer_for_expand(tmp_path, capsys):
    src = write(tmp_path, "tiny.py", GRAPH_PY)
    msg = one_error(capsys, src, "--expand", "conv9", "-o", tmp_path / "x.gv")
    assert msg.startswith("expand='conv9' is not a layer of this drawing; expected one of ") and "'dense'" in msg


def test_an_output_path_that_cannot_be_written(tmp_path, capsys):
    src = write(tmp_path, "tiny.py", GRAPH_PY)
    blocker = write(tmp_path, "file.txt", "")  # a file where the output's folder should be
    msg = one_error(capsys, src, "-o", blocker / "out.gv")
    assert msg == (f"cannot write drawing '{blocker / 'out.gv'}': '{blocker}' is a file, not a folder; "
                   "give -o a path in a folder you can write to")  # fmt: skip
    assert one_error(capsys, src, "-o", tmp_path) == (
        f"-o '{tmp_path}' is a folder; give a file name such as '{tmp_path / 'graph.svg'}'"
    )
    assert one_error(capsys, src, "-o", tmp_path / "out.jpeg2").startswith(
        f"-o '{tmp_path / 'out.jpeg2'}': cannot tell the format; give a name ending in .svg, .png, .pdf or .gv"
    )


def test_missing_or_unknown_files(tmp_path, capsys):
    missing = tmp_path / "nope.py"
    assert one_error(capsys, missing) == (
        f"no such file '{missing}'; give a .py file that defines build() or a saved .json graph"
    )
    assert one_error(capsys, write(tmp_path, "g.txt", "")).startswith(f"cannot draw '{tmp_path / 'g.txt'}': give a")
    assert one_error(capsys, write(tmp_path, "g.json", "{not json")).startswith("cannot read the graph file: ")


def test_fused_before_the_passes_and_backward_of_a_forward_graph(tmp_path, capsys):
    src = write(tmp_path, "tiny.py", GRAPH_PY)
    assert one_error(capsys, src, "--fused", "--no-passes").startswith("--fused draws the compiled step's kernels")
    fwd = write(tmp_path, "fwd.py", GRAPH_PY.replace('    g.output("gw", gc.grad(loss, w))\n', ""))
    assert one_error(capsys, fwd, "--view", "backward") == (
        f"{fwd} gives a graph without a backward part, so there is no backward view; use --view forward, "
        "or return a training graph or a model from build()"
    )


def test_the_installed_command_prints_no_traceback(tmp_path):
    src = write(tmp_path, "bad.py", "def build():\n    return {}['missing']\n")
    proc = subprocess.run([sys.executable, "-m", "graphc", "render", str(src)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"graphc render: error: build() in {src} raised KeyError: 'missing' (at {src}:2); fix it so that it "
        "returns a Graph, a training graph (nn.training_graph), a compiled step (gc.compile) or an nn.Model\n"
    )


def test_the_gallery_shows_committed_svgs_made_by_commands_that_parse():
    doc = (ROOT / "docs" / "drawings.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\((drawings/[\w.]+)\)", doc)
    assert len(images) == 20
    for name in images:
        svg = (ROOT / "docs" / name).read_text()
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg, name
    from graphc.cli import parser

    commands = re.findall(r"`((?:graphc render \S+ )?--view \w+[^`]*)`", doc)
    assert len(commands) == 20
    for command in commands:
        args = command.removeprefix("graphc render ").split()
        parser().parse_args(["render", "FILE.py", *[a for a in args if not a.endswith(".py")]])
