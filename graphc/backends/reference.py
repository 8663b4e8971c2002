"""The NumPy reference interpreter: the oracle that compiled backends are tested against."""

import numpy as np

from graphc.backends.base import Backend, Executable, RunContext, optimize_for, register_backend, run_reference


class ReferenceExecutable(Executable):
    """Runs every node's NumPy reference in order. The oracle runs the graph as declared unless
    passes=True asks for the optimization pipeline first (to test the passes against it)."""

    def __init__(self, graph, outputs=None, apply_updates=True, passes=False, disable=(), trace=None):
        self.source_graph = graph
        if passes:
            graph, outputs = optimize_for(graph, outputs, disable, trace)
            self.optimize_summary = getattr(graph, "summary", None)
        super().__init__(graph, outputs, apply_updates)

    def execute(self, arrays, env):
        ctx = RunContext(arrays, self.graph.values, env, self.step)
        vals: dict[int, np.ndarray] = {}
        for node in self.nodes:
            vals[node.id] = run_reference(node, [vals[x.id] for x in node.inputs], ctx)
        return vals


@register_backend("reference")
class ReferenceBackend(Backend):
    def compile(self, graph, outputs=None, **options):
        return ReferenceExecutable(graph, outputs, **options)


def run(graph, feeds=None, outputs=None, apply_updates: bool = True, **kw):
    """Run `graph` once with the reference interpreter; see Executable for outputs."""
    return ReferenceExecutable(graph, outputs, apply_updates)(feeds, **kw)
