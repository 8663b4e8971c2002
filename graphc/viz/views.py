"""What a drawing shows: the graph drawn (a Graph, a compiled step before or after its passes,
a Model's training step, a TrainingGraph) and the nodes of a view (forward, backward, the
whole training step)."""

from graphc.errors import AttributeValueError, GraphcError
from graphc.viz.analysis import tainted

VIEWS = ("train", "forward", "backward")
PARTS = ("all", "forward", "backward")
_VIEW_OF_PART = {"all": "train", "forward": "forward", "backward": "backward"}


def bad(argument: str, value, expected: str):
    raise AttributeValueError(f"render: {argument} must be {expected}, got {value!r}")


def choices(values) -> str:
    return "one of " + ", ".join(map(repr, values))


def check_view(view) -> str:
    if view == "all":
        return "train"
    if not isinstance(view, str) or view not in VIEWS:
        bad("view", view, choices(VIEWS))
    return view


def check_part(part) -> str:
    if not isinstance(part, str) or part not in PARTS:
        bad("part", part, choices(PARTS))
    return _VIEW_OF_PART[part]


def checked_roots(graph, roots):
    """None, or the list of root nodes (a single node is accepted), all of them from `graph`."""
    from graphc.ir.node import Node

    if roots is None:
        return None
    if isinstance(roots, Node):
        roots = [roots]
    elif isinstance(roots, (str, bytes)) or not hasattr(roots, "__iter__"):
        bad("roots", roots, "a node or a list of nodes")
    roots = list(roots)
    for r in roots:
        if not isinstance(r, Node):
            bad("roots", r, "a node or a list of nodes")
        if r.graph is not graph:  # a compiled step draws its own optimized copy of the graph
            raise AttributeValueError(f"render: root {r.label} is not a node of the graph drawn ({graph.name!r})")
    return roots


def checked_kernels(kernels):
    if kernels is None:
        return None
    if isinstance(kernels, (str, bytes)) or not hasattr(kernels, "__iter__"):
        bad("kernels", kernels, "a list of objects with .name and .node_ids")
    kernels = list(kernels)
    for k in kernels:
        if not (hasattr(k, "name") and hasattr(k, "node_ids")):
            bad("kernels", k, "a list of objects with .name and .node_ids")
    return kernels


def drawable(obj, passes, kernels, roots):
    """(graph, kernels, roots) to draw for obj: a Graph (as declared, or after the passes with
    passes=True), a compiled step (after its passes unless passes=False), a Model (its compiled
    training step) or a TrainingGraph (its graph)."""
    from graphc.backends.base import Executable
    from graphc.ir.graph import Graph

    if passes is not None and not isinstance(passes, bool):
        bad("passes", passes, "True, False or None")
    model_step = getattr(type(obj), "train_step", None)
    if isinstance(model_step, property) and isinstance(getattr(obj, "graph", None), Graph):
        obj = obj.train_step  # an nn.Model: its training step, what fit runs
    if isinstance(obj, Executable):
        if passes is False:
            source = getattr(obj, "source_graph", obj.graph)
            return source, ([] if kernels is None else kernels), checked_roots(source, roots)
        roots = checked_roots(obj.graph, roots)
        if roots is None:  # what the step computes: its own outputs and updates, not every named output
            live = {n.id for n in obj.nodes}
            roots = [v for v in (*obj.graph.outputs.values(), *obj.graph.updates.values()) if v.id in live]
        return obj.graph, (obj.kernels if kernels is None else kernels), roots
    if not isinstance(obj, Graph) and isinstance(getattr(obj, "graph", None), Graph):
        obj = obj.graph  # a TrainingGraph
    if not isinstance(obj, Graph):
        raise GraphcError(
            f"render: expected a Graph, a compiled executable, a Model or a TrainingGraph, got {type(obj).__name__}"
        )
    roots = checked_roots(obj, roots)
    if passes:
        from graphc.passes import run_passes

        res = run_passes(obj, keep=roots or [])
        return res.graph, kernels, (list(res.kept) if roots is not None else None)
    return obj, kernels, roots


def select(graph, roots=None, part: str = "all"):
    """(nodes to draw, ids of the backward part) for a part: 'all', 'forward' or 'backward'
    (a view name, 'train', is taken for 'all')."""
    view = check_view(part) if part in VIEWS else check_part(part)
    roots = checked_roots(graph, roots)
    nodes = graph.live_nodes(roots) if (roots is not None or graph.roots()) else list(graph.nodes)
    bwd = tainted(nodes)
    if view == "forward":
        nodes = [n for n in nodes if n.id not in bwd]
        # sources only the backward part reads (optimizer state, say) would float unconnected
        used = {x.id for n in nodes for x in n.inputs} | {n.id for n in graph.outputs.values()}
        nodes = [n for n in nodes if n.inputs or n.id in used]
    elif view == "backward":
        keep = {x.id for n in nodes if n.id in bwd for x in (n, *n.inputs)}
        nodes = [n for n in nodes if n.id in keep]
    return nodes, bwd
