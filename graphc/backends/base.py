"""The backend interface: compile(graph) -> Executable. Reference, Numba and CUDA implement it.

The Executable base validates inputs, formats outputs and applies variable updates in place,
so every backend raises the same errors and behaves the same to the user.
"""

import numpy as np

from graphc.backends.feeds import check_feeds
from graphc.errors import GraphcError, InputError
from graphc.ir.node import Node

_BACKENDS: dict[str, type] = {}


def register_backend(name: str):
    def deco(cls):
        cls.name = name
        _BACKENDS[name] = cls
        return cls

    return deco


def backend_names() -> list[str]:
    _load_builtin()
    return sorted(_BACKENDS)


def _load_builtin():
    import importlib

    for mod in ("graphc.backends.reference", "graphc.backends.numba", "graphc.backends.cuda"):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass


def get_backend(name: str):
    _load_builtin()
    if name not in _BACKENDS:
        raise GraphcError(f"unknown backend {name!r}; available: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name]


class RunContext:
    """What a reference implementation may read besides its inputs."""

    __slots__ = ("feeds", "params", "env", "step")

    def __init__(self, feeds, params, env, step):
        self.feeds, self.params, self.env, self.step = feeds, params, env, step

    def concrete(self, shape):
        return tuple(d if isinstance(d, int) else self.env[d] for d in shape)


def resolve_outputs(graph, outputs):
    """Normalise an outputs spec to (list of (key, node), how to package the results)."""
    if outputs is None:
        return list(graph.outputs.items()), "dict"
    if isinstance(outputs, Node | str):
        return [_one(graph, outputs)], "single"
    return [_one(graph, o) for o in outputs], "list"


def _one(graph, o):
    if isinstance(o, Node):
        if o.graph is not graph:
            raise GraphcError(f"output {o.label} is not a node of graph {graph.name!r}")
        return (o.label, o)
    if o in graph.outputs:
        return (o, graph.outputs[o])
    raise GraphcError(f"graph {graph.name!r} has no output {o!r} (outputs: {', '.join(graph.outputs) or 'none'})")


class Executable:
    """A compiled graph: call it with input arrays, get output arrays; variables update in place."""

    def __init__(self, graph, outputs=None, apply_updates: bool = True):
        self.graph = graph
        self._outputs, self._packing = resolve_outputs(graph, outputs)
        self._updates = dict(graph.updates) if apply_updates else {}
        roots = [n for _, n in self._outputs] + list(self._updates.values())
        self.nodes = graph.live_nodes(roots)
        self.needed_inputs = [n for n in self.nodes if n.op == "input"]
        self.step = 0

    def __call__(self, feeds: dict | None = None, **kw):
        if feeds is not None and not isinstance(feeds, dict):
            raise InputError(f"pass inputs as a dict or keywords, got {type(feeds).__name__}")
        feeds = {**(feeds or {}), **kw}
        arrays, env = check_feeds(self.graph, feeds, self.needed_inputs)
        results = self.execute(arrays, env)
        self.step += 1
        # Updates are computed from the old values before any is written, then written in place.
        for var, node in self._updates.items():
            np.copyto(self.graph.values[var], results[node.id], casting="unsafe")
        values = [results[n.id] for _, n in self._outputs]
        if self._packing == "single":
            return values[0]
        if self._packing == "list":
            return values
        return {k: v for (k, _), v in zip(self._outputs, values)}

    def execute(self, arrays: dict, env: dict) -> dict:
        """Compute every root; return {node id: array}. Backends implement this."""
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")


class Backend:
    name = "?"

    def compile(self, graph, outputs=None, **options) -> Executable:
        raise NotImplementedError(f"backend {self.name} must implement compile()")


def compile(graph, backend: str = "reference", outputs=None, **options) -> Executable:
    """Compile `graph` for `backend` ('reference', 'numba', 'cuda')."""
    return get_backend(backend)().compile(graph, outputs=outputs, **options)
