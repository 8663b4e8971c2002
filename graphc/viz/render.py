"""Graphviz drawings of graphs, compiled steps and models: `render` writes them, `dot_source`
gives the DOT text.

Views: 'train' (the whole training step: the forward pass flowing down, the backward pass
climbing back up beside it in red hexagons, level with the layers it differentiates, and the
parameter updates at the end), 'forward' and 'backward'. Colours and shapes follow the node's
role (graphc.viz.style; a legend is drawn in the picture); edges carry shapes and dtypes;
forward values the backward pass reads (saved activations) get a red border and red dashed
edges; each parameter's gradient is labelled `∇ name`; fused kernels are clusters inside their
layer's cluster; a loop's body is drawn once with a back edge marked with its trip count.
`collapse=True` draws one box per layer (see graphc.viz.collapse); a drawing of more than
`max_nodes` nodes is collapsed, then folded further, instead of drawing a wall.
"""

from pathlib import Path

import numpy as np

from graphc.errors import AttributeValueError
from graphc.viz import views
from graphc.viz.analysis import analyse
from graphc.viz.collapse import Grouping, collapsed_picture
from graphc.viz.emit import Picture
from graphc.viz.full import FullDrawing
from graphc.viz.legend import add_legend
from graphc.viz.style import STYLE
from graphc.viz.views import PARTS, VIEWS, select
from graphc.viz.write import INSTALL_HINT, DotNotFoundError, DotNotFoundWarning, target_paths, write

MAX_NODES = 150  # the default cap: past it a drawing is summarised (collapsed, then folded)

OPTIONS = (
    "roots",
    "part",
    "kernels",
    "title",
    "fold_scalars",
    "require_dot",
    "view",
    "collapse",
    "expand",
    "shapes",
    "passes",
    "legend",
    "max_nodes",
    "fold_updates",
    "parts",
)

VIEW_TITLES = {"train": "training step", "forward": "forward", "backward": "backward"}


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        views.bad(name, value, "True or False")
    return bool(value)


def picture(
    obj,
    roots=None,
    part=None,
    kernels=None,
    title=None,
    fold_scalars=True,
    view=None,
    collapse=False,
    expand=None,
    shapes=True,
    passes=None,
    legend=True,
    max_nodes=MAX_NODES,
    fold_updates=True,
    parts=None,
) -> Picture:
    """The Picture of `obj` (see render for the arguments); `parts`: draw the forward, backward
    and update parts apart (default: for the training-step view)."""
    if part is not None and view is not None:
        raise AttributeValueError("render: give view= or part= (its older name), not both")
    view = views.check_part(part) if part is not None else views.check_view("train" if view is None else view)
    kernels = views.checked_kernels(kernels)
    if title is not None and not isinstance(title, str):
        views.bad("title", title, "a str or None")
    for name, value in (
        ("fold_scalars", fold_scalars),
        ("collapse", collapse),
        ("shapes", shapes),
        ("legend", legend),
        ("fold_updates", fold_updates),
    ):
        _flag(name, value)
    if max_nodes is not None and (
        isinstance(max_nodes, bool) or not isinstance(max_nodes, (int, np.integer)) or max_nodes < 1
    ):
        views.bad("max_nodes", max_nodes, "a positive int or None")
    if expand is not None and not isinstance(expand, str):
        views.bad("expand", expand, "a layer name (str) or None")
    if parts is not None and not isinstance(parts, (bool, np.bool_)):
        views.bad("parts", parts, "True, False or None")
    graph, kernels, roots = views.drawable(obj, passes, kernels, roots)
    nodes, _ = select(graph, roots, {"train": "all"}.get(view, view))
    an = analyse(graph, nodes)
    has_backward = any(an.part(n) != "forward" for n in nodes)
    parts = (view == "train" and has_backward) if parts is None else bool(parts)
    what = VIEW_TITLES[view] if has_backward or view != "train" else "forward"  # nothing to train: the graph
    head = title if title is not None else f"{graph.name} ({what})"

    def full():
        pic = Picture(graph.name, head, mirror=parts, shapes=shapes)
        d = FullDrawing(graph, nodes, an, pic, kernels, fold_scalars, fold_updates, parts=parts)
        d.draw()
        return pic, d.roles_drawn | ({"saved"} if any(i in an.saved for i in d.ids) else set()), d.loops

    def collapsed(fold_runs=False, fold_all=False):
        pic = Picture(graph.name, head, mirror=parts, shapes=shapes)
        grouping = Grouping(graph, nodes, an, expand, fold_runs=fold_runs, fold_all_updates=fold_all)
        return pic, collapsed_picture(graph, nodes, an, pic, grouping, parts, kernels), 0

    attempts = [] if collapse or expand is not None else [(full, "")]
    attempts += [
        (collapsed, "one box per layer"),
        (lambda: collapsed(fold_runs=True), "runs of alike layers folded"),
        (lambda: collapsed(fold_runs=True, fold_all=True), "alike layers and all updates folded"),
    ]
    how = ""
    for i, (make, way) in enumerate(attempts):
        pic, roles, loops = make()
        how = way
        count = len(pic.nodes) + (_legend_size(roles) if legend else 0)
        if max_nodes is None or count <= max_nodes or i == len(attempts) - 1:
            break
    if max_nodes is not None and count > max_nodes:
        pic, roles = _summary(graph, nodes, an, head, max_nodes), set()
    elif how and not (collapse or expand is not None):
        pic.title = f"{head}\\n(summarised: {how}, as the full drawing has more than max_nodes={max_nodes} nodes)"
    elif how and expand is not None:
        pic.title = f"{head}\\n(layers collapsed, {expand} expanded)"
    if legend and roles:
        loop = {"shape": "box", "style": "rounded,bold", "color": "#1f77b4"}
        extra = [("loop body, drawn once\\n(back edge: next step ×T)", loop)] if loops else []
        add_legend(pic, roles, "saved" in roles, extra)
    return pic


def _legend_size(roles) -> int:
    return len(roles)


def _summary(graph, nodes, an, head, max_nodes) -> Picture:
    """One note instead of a wall: what the graph holds, and how to draw parts of it."""
    counts: dict[str, int] = {}
    for n in nodes:
        counts[an.role[n.id]] = counts.get(an.role[n.id], 0) + 1
    ops: dict[str, int] = {}
    for n in nodes:
        if not n.is_source:
            ops[n.op] = ops.get(n.op, 0) + 1
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:10]
    lines = [
        f"{len(nodes)} nodes: " + ", ".join(f"{c} {r}" for r, c in counts.items()),
        "most used ops: " + ", ".join(f"{op}×{c}" for op, c in top),
        f"even collapsed, the drawing has more than max_nodes={max_nodes} nodes;",
        "draw it all with max_nodes=None, one layer with expand=, or a part with roots=",
    ]
    pic = Picture(graph.name, head)
    pic.node("summary", (), label="\\n".join(lines), shape="note", style="filled", fillcolor="#f2f2f2")
    return pic


def dot_source(obj, **options) -> str:
    """The DOT text of a drawing of `obj` (the arguments of render, less path and require_dot)."""
    _check_unknown(options, exclude=("require_dot",))
    return picture(obj, **options).digraph().source


def build(graph, roots=None, part: str = "all", kernels=None, title=None, fold_scalars: bool = True, **options):
    """The graphviz.Digraph of exactly the selected nodes: every node drawn (no cap, no
    folding, no legend, one flow from top to bottom) unless options ask otherwise."""
    _check_unknown(options, exclude=("require_dot",))
    options = {"max_nodes": None, "fold_updates": False, "legend": False, "parts": False, **options}
    if title is None:
        title = f"{getattr(graph, 'name', '')} ({part})" if isinstance(part, str) and part in PARTS else None
    return picture(graph, roots, part, kernels, title, fold_scalars, **options).digraph()


def _check_unknown(options, exclude=()):
    allowed = [o for o in OPTIONS if o not in exclude]
    for name in sorted(options):
        if name not in allowed:
            raise AttributeValueError(f"render: unknown argument {name!r}; expected one of {', '.join(OPTIONS)}")


def render(
    graph,
    path,
    roots=None,
    part=None,
    kernels=None,
    title=None,
    fold_scalars: bool = True,
    require_dot: bool = False,
    **options,
) -> list[Path]:
    """Draw a Graph, a compiled step, a Model or a TrainingGraph with Graphviz; return the paths written.

    path: 'g.svg' / 'g.png' / 'g.pdf' writes 'g.gv' and the image; 'g.gv' (or '.dot') writes
    only the source; no suffix means SVG. Without the `dot` program the .gv is still written
    and a DotNotFoundWarning says how to install it (a DotNotFoundError if require_dot).

    view: 'train' (default: forward, backward and updates laid out apart), 'forward' or
    'backward'; part: its older name ('all', 'forward', 'backward'). passes: draw after the
    optimization passes (default for a compiled step or a Model) or before them (default for a
    Graph). kernels: objects with .name and .node_ids drawn as clusters (a compiled step's
    own by default; kernels=[] draws none). collapse: one box per layer; expand='layer' opens
    one layer (and collapses the rest). shapes: shapes and dtypes on edges. legend: draw the
    legend. fold_updates: each parameter's optimizer work as one update box. parts: draw the
    forward pass, backward pass and updates apart (default: in the training-step view). max_nodes: the
    most nodes drawn before the drawing is summarised (collapsed, alike layers folded; None: no
    cap). roots: a node or a list of nodes of the graph drawn (default: its outputs and updates).
    title, fold_scalars (scalar constants written inside their consumers). A bad argument
    raises AttributeValueError naming it, its value and what it accepts.
    """
    _check_unknown(options)
    if not isinstance(require_dot, (bool, np.bool_)):
        views.bad("require_dot", require_dot, "True or False")
    gv, image, fmt = target_paths(path)
    source = picture(graph, roots, part, kernels, title, fold_scalars, **options).digraph().source  # checks first
    return write(source, gv, image, fmt, bool(require_dot))


__all__ = [
    "render",
    "dot_source",
    "picture",
    "build",
    "select",
    "DotNotFoundError",
    "DotNotFoundWarning",
    "INSTALL_HINT",
    "STYLE",
    "PARTS",
    "VIEWS",
    "MAX_NODES",
]
