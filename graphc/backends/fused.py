"""What the kernel backends (numba, cuda) share at compile time: the graph optimized
(graphc.passes) and its nodes fused into kernel groups (graphc.fusion)."""

from graphc.backends.base import Executable, applies_updates, optimize_for
from graphc.backends.loopgen import reduce_spec
from graphc.fusion import fuse


class FusedExecutable(Executable):
    """An Executable whose graph is optimized (unless `passes` is False) and fused: `kernels`
    holds the groups, `optimize_summary` the passes' summary (None without passes). A step that
    applies no updates is optimized on a copy without them (`_without_updates`)."""

    def __init__(self, graph, outputs, apply_updates, passes, disable, trace):
        self.optimize_summary = None
        if passes and graph.updates and not applies_updates(outputs, apply_updates):
            graph, outputs = _without_updates(graph, outputs)
        if passes:
            opt, outputs = optimize_for(graph, outputs, disable, trace)
            graph, self.optimize_summary = opt.graph, opt.summary
        super().__init__(graph, outputs, apply_updates)
        roots = [n for _, n in self._outputs] + list(self._updates.values())
        self.kernels = fuse(self.nodes, roots, lambda n: reduce_spec(n) is not None)


def _without_updates(graph, outputs):
    """A copy of `graph` without its updates, and `outputs` with its nodes those of the copy: a
    step that does not train (an evaluation of a training graph) is optimized for its outputs
    only, so the passes drop what only the updates read (a scan's gradient, and with it the
    stacked carry-ins it would read: loop_prune clears the scan's `saved`)."""
    from graphc.ir.node import Node
    from graphc.passes.rewrite import rewrite

    copy, mapping = rewrite(graph, with_map=True)
    copy.updates = {}

    def mapped(o):
        return mapping[o.id] if isinstance(o, Node) and o.graph is graph else o

    if outputs is None or isinstance(outputs, Node | str):
        return copy, mapped(outputs)
    return copy, [mapped(o) for o in outputs]
