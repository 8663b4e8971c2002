"""The NumPy reference interpreter: the oracle that compiled backends are tested against."""

import numpy as np

from graphc.backends.base import Backend, Executable, RunContext, optimize_for, register_backend, run_reference
from graphc.errors import InputError


class ReferenceExecutable(Executable):
    """Runs every node's NumPy reference in order. The oracle runs the graph as declared unless
    passes=True asks for the optimization pipeline first (to test the passes against it)."""

    def __init__(self, graph, outputs=None, apply_updates=None, passes=False, disable=(), trace=None):
        self.source_graph = graph
        if passes:
            opt, outputs = optimize_for(graph, outputs, disable, trace)
            graph, self.optimize_summary = opt.graph, opt.summary
        super().__init__(graph, outputs, apply_updates)

    def execute(self, arrays, env):
        ctx = RunContext(arrays, self.graph.values, env, self.step)
        vals: dict[int, np.ndarray] = {}
        for node in self.nodes:
            vals[node.id] = run_reference(node, [vals[x.id] for x in node.inputs], ctx)
        return vals


@register_backend("reference")
class ReferenceBackend(Backend):
    options = ("apply_updates", "passes", "disable", "trace")

    def compile(self, graph, outputs=None, **options):
        """Options: apply_updates (see gc.compile), passes=False (True runs graphc.passes.optimize
        first, to test the passes against the oracle), disable=(pass names), trace=callable (e.g. print)."""
        return ReferenceExecutable(graph, outputs, **options)


def run(graph, feeds=None, outputs=None, apply_updates: bool | None = None, **kw):
    """Run `graph` once with the reference interpreter; outputs and apply_updates as in
    gc.compile (the updates are written only when outputs is None, unless apply_updates=True)."""
    return ReferenceExecutable(graph, outputs, apply_updates)(feeds, **kw)


def run_body(body, args, step: int = 0) -> list:
    """Run a sub-graph (graphc.ir.subgraph.SubGraph) with the reference interpreter.

    `args`: one array per input of `body.all_inputs` (the inputs, then the captured ones), of
    the input's dtype and shape (symbolic dimensions bind to the sizes given); `step` is the
    run counter random ops read. Returns the output arrays, in order.
    """
    inputs = body.all_inputs
    name = body.graph.name
    if len(args) != len(inputs):
        raise InputError(f"body {name!r} takes {len(inputs)} inputs, got {len(args)}")
    feeds, env = {}, {}
    for i, (node, arg) in enumerate(zip(inputs, args)):
        arr = np.asarray(arg)
        fits = arr.dtype == np.dtype(node.dtype) and arr.ndim == node.ndim
        for d, size in zip(node.shape, arr.shape) if fits else ():
            fits = fits and (env.setdefault(d, size) == size if isinstance(d, str) else d == size)
        if not fits:
            got = f"{arr.dtype}{list(arr.shape)}"
            raise InputError(f"body {name!r}: input {i} ({node.name}) is {node.type_str}, got {got}")
        feeds[node.name] = arr
    ctx = RunContext(feeds, {}, env, step)
    vals: dict[int, object] = {}
    for node in body.nodes:
        vals[node.id] = run_reference(node, [vals[x.id] for x in node.inputs], ctx)
    return [vals[n.id] for n in body.outputs]
