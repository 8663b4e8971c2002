"""What the kernel backends (numba, cuda) share at compile time: the graph optimized
(graphc.passes) and its nodes fused into kernel groups (graphc.fusion)."""

from graphc.backends.base import Executable, optimize_for
from graphc.backends.loopgen import reduce_spec
from graphc.fusion import fuse


class FusedExecutable(Executable):
    """An Executable whose graph is optimized (unless `passes` is False) and fused: `kernels`
    holds the groups, `optimize_summary` the passes' summary (None without passes)."""

    def __init__(self, graph, outputs, apply_updates, passes, disable, trace):
        self.optimize_summary = None
        if passes:
            opt, outputs = optimize_for(graph, outputs, disable, trace)
            graph, self.optimize_summary = opt.graph, opt.summary
        super().__init__(graph, outputs, apply_updates)
        roots = [n for _, n in self._outputs] + list(self._updates.values())
        self.kernels = fuse(self.nodes, roots, lambda n: reduce_spec(n) is not None)
