"""Graphviz drawings of a graph: forward, backward, or both, with roles, shapes and kernels.

Colours follow the node's role (input, parameter, state, constant, forward op, backward op,
optimizer update op: its phase tag), outputs and update values are highlighted, backward and
update ops are hexagons, and forward values that
the backward pass reads ("saved activations") get a red border and red dashed edges. Name
scopes become clusters, unless fused kernels are given: a node sits in one cluster only, so
kernels take precedence and the scope moves into the node's tooltip.
"""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import graphviz
import numpy as np

from graphc.errors import AttributeValueError, GraphcError
from graphc.io import atomic
from graphc.ir import dtypes
from graphc.ir.phase import Phase
from graphc.ir.text import attr_text

INSTALL_HINT = (
    "the Graphviz 'dot' program is not on PATH, so only the .gv source was written. "
    "Install it with `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) "
    "or `conda install -c conda-forge graphviz`, or render the .gv at https://dreampuf.github.io/GraphvizOnline"
)

DOT_TIMEOUT_S = 120

# role -> node attributes. Backward ops differ from forward ones in colour and shape.
STYLE = {
    "input": {"shape": "ellipse", "style": "filled", "fillcolor": "#bcd9f5"},
    "param": {"shape": "cylinder", "style": "filled", "fillcolor": "#c5e8b7"},
    "state": {"shape": "cylinder", "style": "filled", "fillcolor": "#dcdcdc"},
    "const": {"shape": "note", "style": "filled", "fillcolor": "#f2f2f2"},
    "forward": {"shape": "box", "style": "rounded,filled", "fillcolor": "#fff2cc"},
    "backward": {"shape": "hexagon", "style": "filled", "fillcolor": "#f4c7c3"},
    "update": {"shape": "hexagon", "style": "filled", "fillcolor": "#eadcf5"},
}
OUTPUT = {"fillcolor": "#ffd966", "penwidth": "2.5", "peripheries": "2"}
UPDATE = {"fillcolor": "#d9c2f0", "penwidth": "2"}
SAVED = {"color": "#d62728", "penwidth": "2.5"}
SAVED_EDGE = {"color": "#d62728", "style": "dashed"}
UPDATE_EDGE = {"color": "#7b3fb5", "style": "dashed", "constraint": "false"}
KERNEL_CLUSTER = {"style": "dashed,rounded", "color": "#1f77b4", "penwidth": "2", "fontcolor": "#1f77b4"}
SCOPE_CLUSTER = {"style": "rounded", "color": "#999999", "fontcolor": "#555555"}


class DotNotFoundError(GraphcError, RuntimeError):
    """The `dot` program is needed for SVG/PNG output and is not installed."""


class DotNotFoundWarning(UserWarning):
    """Only the .gv file was written because `dot` is not installed."""


def _scalar_const(n) -> str | None:
    if not n.is_const or np.ndim(n.attrs["value"]) != 0:
        return None
    x = n.attrs["value"].item()
    if not dtypes.is_float(n.dtype):
        return repr(x)
    text = f"{float(x):.4g}"
    return text if any(c in text for c in ".eni") else text + ".0"  # 2 -> 2.0, keep nan/inf


def _tainted(nodes) -> set[int]:
    """ids of backward and update nodes (their phase tag) and of everything computed from them."""
    out: set[int] = set()
    for n in nodes:
        if n.phase is not Phase.FORWARD or any(x.id in out for x in n.inputs):
            out.add(n.id)
    return out


PARTS = ("all", "forward", "backward")
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def _bad(argument: str, value, expected: str):
    raise AttributeValueError(f"render: {argument} must be {expected}, got {value!r}")


def _checked_roots(graph, roots):
    """None, or the list of root nodes (a single node is accepted), all of them from `graph`."""
    from graphc.ir.node import Node

    if roots is None:
        return None
    if isinstance(roots, Node):
        roots = [roots]
    elif isinstance(roots, (str, bytes)) or not hasattr(roots, "__iter__"):
        _bad("roots", roots, "a node or a list of nodes")
    roots = list(roots)
    for r in roots:
        if not isinstance(r, Node):
            _bad("roots", r, "a node or a list of nodes")
        if r.graph is not graph:  # a compiled step draws its own optimized copy of the graph
            raise AttributeValueError(f"render: root {r.label} is not a node of the graph drawn ({graph.name!r})")
    return roots


def _checked_options(kernels, title, fold_scalars):
    """kernels as a list (or None), after checking it, title and fold_scalars."""
    if kernels is not None:
        if isinstance(kernels, (str, bytes)) or not hasattr(kernels, "__iter__"):
            _bad("kernels", kernels, "a list of objects with .name and .node_ids")
        kernels = list(kernels)
        for k in kernels:
            if not (hasattr(k, "name") and hasattr(k, "node_ids")):
                _bad("kernels", k, "a list of objects with .name and .node_ids")
    if title is not None and not isinstance(title, str):
        _bad("title", title, "a str or None")
    if not isinstance(fold_scalars, (bool, np.bool_)):
        _bad("fold_scalars", fold_scalars, "True or False")
    return kernels


def select(graph, roots=None, part: str = "all"):
    """(nodes to draw, ids of the backward part) for a part: 'all', 'forward' or 'backward'."""
    if not isinstance(part, str) or part not in PARTS:
        _bad("part", part, "one of " + ", ".join(map(repr, PARTS)))
    roots = _checked_roots(graph, roots)
    nodes = graph.live_nodes(roots) if (roots is not None or graph.roots()) else list(graph.nodes)
    bwd = _tainted(nodes)
    if part == "forward":
        nodes = [n for n in nodes if n.id not in bwd]
        # sources only the backward part reads (optimizer state, say) would float unconnected
        used = {x.id for n in nodes for x in n.inputs} | {n.id for n in graph.outputs.values()}
        nodes = [n for n in nodes if n.inputs or n.id in used]
    elif part == "backward":
        keep = {x.id for n in nodes if n.id in bwd for x in (n, *n.inputs)}
        nodes = [n for n in nodes if n.id in keep]
    return nodes, bwd


def build(graph, roots=None, part: str = "all", kernels=None, title=None, fold_scalars: bool = True):
    """The graphviz.Digraph of a graph (see render)."""
    kernels = _checked_options(kernels, title, fold_scalars)
    roots = _checked_roots(graph, roots)
    nodes, bwd = select(graph, roots, part)
    ids = {n.id for n in nodes}
    consumers: dict[int, list] = {}
    for n in nodes:
        for x in n.inputs:
            consumers.setdefault(x.id, []).append(n)
    folded = {n.id: s for n in nodes if fold_scalars and (s := _scalar_const(n)) is not None and n.id in consumers}
    saved = {x.id for n in nodes if n.id in bwd and n.opdef.reads_values
             for x in n.inputs if x.id not in bwd and x.role == "forward"}  # fmt: skip
    outputs = {}
    for k, v in graph.outputs.items():
        outputs.setdefault(v.id, []).append(k)
    updates = {}
    for k, v in graph.updates.items():
        updates.setdefault(v.id, []).append(k)
    names = _text_names(graph, roots)
    by_label = {n.label: names[n.id] for n in nodes if n.id in names}  # grad_of labels as the text form names them

    dot = graphviz.Digraph(graph.name, graph_attr={
        "rankdir": "TB", "newrank": "true",  # newrank: dot 2.43 fails on edges between clusters without it
        "fontname": "Helvetica", "labelloc": "t", "fontsize": "16",
        "label": title if title is not None else f"{graph.name} ({part})",
    }, node_attr={"fontname": "Helvetica", "fontsize": "11"},
       edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#555555"})  # fmt: skip

    stmts: dict[int, dict] = {}
    for n in nodes:
        if n.id in folded:
            continue
        attrs = dict(STYLE[n.role])
        label = _label(n, names, folded)
        if n.id in outputs:
            attrs.update(OUTPUT)
            label += "\\n→ " + ", ".join(outputs[n.id])
        if n.id in updates:
            attrs.update(UPDATE)
            label += "\\n⇒ " + ", ".join(updates[n.id])
        if n.id in saved:
            attrs.update(SAVED)
            label += "\\n(saved for backward)"
        tip = [f"{n.op}: {n.type_str}"]
        if n.scope:
            tip.append(f"scope {n.scope}")
        if n.location:
            tip.append(f"declared at {n.location}")
        if n.is_backward and n.grad_of:
            tip.append(f"backward of {by_label.get(n.grad_of, n.grad_of)}")
        elif n.phase is Phase.UPDATE:
            tip.append("update")
        attrs["tooltip"] = "; ".join(tip)
        stmts[n.id] = {"name": f"n{n.id}", "label": label, **attrs}

    _place(dot, nodes, stmts, kernels)

    for n in nodes:
        if n.id in folded:
            continue
        for x in n.inputs:
            if x.id in folded or x.id not in ids:
                continue
            e = {"label": x.type_str}
            if x.id in saved and n.id in bwd:
                e.update(SAVED_EDGE)
            dot.edge(f"n{x.id}", f"n{n.id}", **e)
    for var, v in graph.updates.items():
        p = graph.params[var]
        if v.id in ids and v.id in stmts and p.id in stmts:
            dot.edge(f"n{v.id}", f"n{p.id}", label="update", **UPDATE_EDGE)
    return dot


def _text_names(graph, roots):
    """The names the text form uses (x, w, %3), so drawings and text cross-reference."""
    nodes = graph.live_nodes(roots) if (roots is not None or graph.roots()) else list(graph.nodes)
    names, k = {}, 0
    for n in nodes:
        if n.is_input or n.is_param:
            names[n.id] = n.name
        elif _scalar_const(n) is None:
            names[n.id] = f"%{k}"
            k += 1
    return names


def _label(n, names, folded) -> str:
    name = names.get(n.id, f"#{n.id}")
    if n.is_input or n.is_param:
        return f"{name}\\n{n.type_str}"
    if n.is_const:
        return f"{name} const\\n{n.type_str}"
    head = f"{name} = {n.op}"
    if any(x.id in folded for x in n.inputs):
        head += "(" + ", ".join(folded.get(x.id, "·") for x in n.inputs) + ")"
    lines = [head]
    attrs = [f"{k}={attr_text(v)}" for k, v in n.attrs.items()]
    if attrs:
        lines.append(", ".join(attrs))
    if not n.inputs or all(x.id in folded for x in n.inputs):
        lines.append(n.type_str)  # no incoming edge shows the type
    return "\\n".join(lines)


def _place(dot, nodes, stmts, kernels):
    """Put nodes into kernel clusters if given, else into (nested) scope clusters."""
    if kernels is not None:
        member = {}
        groups = []
        for k in kernels:
            inside = [i for i in k.node_ids if i in stmts and i not in member]
            for i in inside:
                member[i] = len(groups)
            groups.append((str(k.name), inside))
        for gi, (name, inside) in enumerate(groups):
            if not inside:
                continue
            with dot.subgraph(name=f"cluster_kernel_{gi}") as c:
                c.attr(label=f"kernel {name}", **KERNEL_CLUSTER)
                for i in inside:
                    c.node(**stmts[i])
        for n in nodes:
            if n.id in stmts and n.id not in member:
                dot.node(**stmts[n.id])
        return
    tree: dict = {"nodes": [], "children": {}}
    for n in nodes:
        if n.id not in stmts:
            continue
        t = tree
        for part in n.scope.split("/") if n.scope else []:
            t = t["children"].setdefault(part, {"nodes": [], "children": {}})
        t["nodes"].append(stmts[n.id])
    counter = [0]

    def emit(g, t):
        for s in t["nodes"]:
            g.node(**s)
        for label, child in t["children"].items():
            counter[0] += 1
            with g.subgraph(name=f"cluster_scope_{counter[0]}") as c:
                c.attr(label=label, **SCOPE_CLUSTER)
                emit(c, child)

    emit(dot, tree)


def _drawable(obj, kernels):
    """(Graph, kernels) from a Graph, a compiled executable or a TrainingGraph."""
    from graphc.backends.base import Executable
    from graphc.ir.graph import Graph

    if isinstance(obj, Executable):
        return obj.graph, (obj.kernels if kernels is None else kernels)
    if not isinstance(obj, Graph) and isinstance(getattr(obj, "graph", None), Graph):
        obj = obj.graph  # a TrainingGraph
    if not isinstance(obj, Graph):
        raise GraphcError(
            f"render: expected a Graph, a compiled executable or a TrainingGraph, got {type(obj).__name__}"
        )
    return obj, kernels


def _user_stacklevel() -> int:
    """The warnings stacklevel of the innermost caller outside the graphc package, so that a
    warning points at the user's line whether render was called as gc.render or directly."""
    frame, level = sys._getframe(1), 1  # level 1: the function that calls warnings.warn
    while frame is not None:
        if not os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
            return level
        frame, level = frame.f_back, level + 1
    return 2


OPTIONS = ("roots", "part", "kernels", "title", "fold_scalars", "require_dot")


def render(graph, path, roots=None, part: str = "all", kernels=None, title=None, fold_scalars: bool = True,
           require_dot: bool = False, **unknown) -> list[Path]:  # fmt: skip
    """Draw `graph` with Graphviz; return the written paths.

    path: 'g.svg' / 'g.png' / 'g.pdf' writes 'g.gv' and the image; 'g.gv' (or '.dot') writes
    only the source; no suffix means SVG. part: 'all', 'forward' (nodes not computed from
    backward ones) or 'backward' (backward nodes, updates, and the forward values they read).
    kernels: objects with .name and .node_ids, drawn as clusters. Without the `dot` program
    the .gv is still written and a DotNotFoundWarning says how to install it (an error
    if require_dot). `graph` may also be a compiled executable (its optimized graph is drawn,
    with its fused kernels as clusters unless kernels=[] is given) or a TrainingGraph.
    roots: a node or a list of nodes of `graph` (default: its outputs and updates). A bad
    argument raises AttributeValueError naming it, its value and what it accepts.
    """
    if unknown:  # caught here rather than by Python so that gc.render and this say the same
        name = sorted(unknown)[0]
        raise AttributeValueError(f"render: unknown argument {name!r}; expected one of {', '.join(OPTIONS)}")
    graph, kernels = _drawable(graph, kernels)
    if not isinstance(path, (str, os.PathLike)):
        _bad("path", path, "a str or a path")
    if not isinstance(require_dot, (bool, np.bool_)):
        _bad("require_dot", require_dot, "True or False")
    path = Path(path)
    if path.is_dir():
        raise AttributeValueError(f"render: path {str(path)!r} is a folder; give a file name such as "
                                  f"{str(path / 'graph.svg')!r}")  # fmt: skip
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("gv", "dot"):
        gv, fmt = path, None
    else:
        fmt = suffix or "svg"
        if fmt not in graphviz.FORMATS:
            raise AttributeValueError(
                f"render: unknown output format {fmt!r} for {str(path)!r}; use .svg, .png, .pdf or .gv"
            )
        gv = path.with_suffix(".gv")
        path = path.with_suffix("." + fmt)
    source = build(graph, roots, part, kernels, title, fold_scalars).source  # every check before any write
    target = gv
    try:
        with atomic.writing() as tag:
            atomic.make_folder(gv.parent)
            _remove_leftovers(gv.parent, {gv.name, path.name})
            atomic.atomic_write(gv, source.encode(), tag)
            if fmt is None:
                return [gv]
            dot_exe = shutil.which("dot")
            if dot_exe is None:
                message = f"render {str(path)!r}: {INSTALL_HINT} ({gv})"
                if require_dot:
                    raise DotNotFoundError(message)
                warnings.warn(message, DotNotFoundWarning, stacklevel=_user_stacklevel())
                return [gv]
            target = path
            _run_dot(dot_exe, fmt, gv, path, path.with_name(f".{path.name}.{tag}.tmp"))
    except OSError as exc:
        raise atomic.write_error("drawing", target, exc) from None
    return [gv, path]


def _run_dot(dot_exe: str, fmt: str, gv: Path, path: Path, tmp: Path) -> None:
    """dot writes the image to `tmp`, which then replaces `path` in one step."""
    try:
        try:
            proc = subprocess.run([dot_exe, f"-T{fmt}", str(gv), "-o", str(tmp)], capture_output=True, text=True,
                                  timeout=DOT_TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise GraphcError(f"render: dot took more than {DOT_TIMEOUT_S} s on {gv}") from None
        if proc.returncode != 0:
            raise GraphcError(f"render: dot failed on {gv}: {proc.stderr.strip()}")
        os.replace(tmp, path)
        atomic.sync_folder(path.parent)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _remove_leftovers(folder: Path, names) -> None:
    """Temporary files that killed renders of these names left (graphc.io.atomic judges which)."""
    for name in names:
        n = re.escape(name)
        atomic.remove_stale(folder, re.compile(rf"\.{n}\.(?P<tag>{atomic.TAG})\.tmp"))
        atomic.remove_stale(folder, re.compile(rf"\.{n}\.{atomic.OLD_TMP}\.tmp"))  # before writer tags


__all__ = ["render", "build", "select", "DotNotFoundError", "DotNotFoundWarning", "INSTALL_HINT", "STYLE", "PARTS"]
