"""The backend interface: compile(graph) -> Executable. The reference (NumPy) and Numba (CPU)
backends implement it.

The Executable base validates inputs, formats outputs and applies variable updates in place,
so every backend raises the same errors and behaves the same to the user.
"""

import numpy as np

from graphc.backends.feeds import check_feeds
from graphc.backends.threads import variables_lock
from graphc.errors import GraphcError, InputError, OptionError, where
from graphc.ir.location import user_location
from graphc.ir.node import Node
from graphc.ops.context import RunContext  # noqa: F401  (re-exported: backends import it from here)
from graphc.ops.registry import Kind

_BACKENDS: dict[str, type] = {}
_UNAVAILABLE: dict[str, GraphcError] = {}  # backend name -> the error compiling for it gives here


def register_backend(name: str):
    def deco(cls):
        cls.name = name
        _BACKENDS[name] = cls
        return cls

    return deco


def register_unavailable(name: str, error: GraphcError) -> None:
    """Record that backend `name` cannot run here (no device): compiling for it raises `error`."""
    _UNAVAILABLE[name] = error


def unavailable(name: str) -> GraphcError | None:
    """The error of a backend that cannot run here, else None."""
    _load_builtin()
    return _UNAVAILABLE.get(name)


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
        if name in _UNAVAILABLE:
            err = _UNAVAILABLE[name]
            raise type(err)(str(err))
        raise GraphcError(f"unknown backend {name!r}; available: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name]


def run_reference(node, args, ctx):
    """node's NumPy reference on `args`, as node's dtype; a failure names the op, the shapes
    and the user's line (the reference backend, and other backends' fallback path)."""
    try:
        out = node.opdef.ref(node, args, ctx)
    except GraphcError:
        raise
    except Exception as exc:
        shapes = ", ".join(str(a.shape) for a in args)
        raise GraphcError(f"{node.op} failed at run time on {shapes}: {exc}" + where(node.location)) from exc
    if node.is_tuple:  # a node with several outputs: a tuple of arrays
        return tuple(np.asarray(o, dtype=dt) for o, (_, dt) in zip(out, node.types))
    out = np.asarray(out)
    return out if out.dtype == node.dtype else out.astype(node.dtype)


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


def optimize_for(graph, outputs=None, disable=(), trace=None):
    """(Optimized, outputs): the passes run with output nodes that are not named outputs kept,
    and `outputs` with those nodes replaced by their new ones."""
    from graphc.passes import run_passes

    if isinstance(outputs, Node):
        res = run_passes(graph, disable=disable, keep=[outputs], trace=trace)
        return res, res.kept[0]
    if outputs is not None and not isinstance(outputs, str):
        outs = list(outputs)
        nodes = [o for o in outs if isinstance(o, Node)]
        res = run_passes(graph, disable=disable, keep=nodes, trace=trace)
        it = iter(res.kept)
        return res, [next(it) if isinstance(o, Node) else o for o in outs]
    return run_passes(graph, disable=disable, trace=trace), outputs


def applies_updates(outputs, apply_updates: bool | None) -> bool:
    """Whether a step writes the graph's updates: by default only when the whole graph is
    compiled (outputs=None); a step asked for chosen outputs (an evaluation) trains only
    with apply_updates=True."""
    return outputs is None if apply_updates is None else bool(apply_updates)


class Executable:
    """A compiled graph: call it with input arrays, get output arrays.

    apply_updates (see applies_updates): None, the default, writes the graph's updates into
    its variables when the whole graph is compiled and not when chosen outputs are; True or
    False say so explicitly.

    Threads: calls may come from several threads. Each holds the lock of the graph's
    variables (graphc.backends.threads) for the whole call, so the calls of every step
    sharing those variables (this one, an evaluation step of the same graph) run one at a
    time; a backend overriding __call__ takes the same lock.
    """

    def __init__(self, graph, outputs=None, apply_updates: bool | None = None):
        self.graph = graph
        self._outputs, self._packing = resolve_outputs(graph, outputs)
        self._updates = dict(graph.updates) if applies_updates(outputs, apply_updates) else {}
        roots = [n for _, n in self._outputs] + list(self._updates.values())
        self.nodes = graph.live_nodes(roots)
        self.needed_inputs = [n for n in self.nodes if n.is_input]
        self.step = 0
        # (node id, whether it is a source) per output, (variable, node id) per update
        self._out_ids = [(n.id, n.is_source) for _, n in self._outputs]
        self._update_ids = [(var, n.id) for var, n in self._updates.items()]
        self._lock = variables_lock(graph)  # one per set of variables, for the graph's lifetime

    def __call__(self, feeds: dict | None = None, **kw):
        """One step: check the feeds, run, copy the outputs, write the updates. Calls from several
        threads are safe: each holds the lock of the graph's variables for the whole call, so the
        calls of every step sharing those variables run one at a time (graphc.backends.threads)."""
        with self._lock:
            if feeds is not None and not isinstance(feeds, dict):
                raise InputError(f"pass inputs as a dict or keywords, got {type(feeds).__name__}")
            if kw:
                feeds = {**(feeds or {}), **kw}
            arrays, env = check_feeds(self.graph, feeds, self.needed_inputs)
            results = self.execute(arrays, env)
            self.step += 1
            values = self._output_values(results, arrays)
            self._write_updates(results)
            if self._packing == "single":
                return values[0]
            if self._packing == "list":
                return values
            return {k: v for (k, _), v in zip(self._outputs, values)}

    def _write_updates(self, results: dict) -> None:
        """Updates are computed from the old values before any is written, then written in place.
        One whose result is its variable's own array was written there by its kernel; one whose
        result is another updated variable (or a view of it: `a <- b, b <- a`) is copied first."""
        variables = self.graph.values
        writes = [(variables[var], results[vid]) for var, vid in self._update_ids]
        writes = [(old, new) for old, new in writes if new is not old]
        if len(writes) > 1:
            targets = {id(old) for old, _ in writes}
            writes = [
                (old, np.array(new) if id(new) in targets or id(new.base) in targets else new) for old, new in writes
            ]
        for old, new in writes:
            np.copyto(old, new, casting="unsafe")

    def _output_values(self, results: dict, arrays: dict) -> list:
        """The outputs, as arrays the caller owns. An output may be a variable, a fed array or a
        constant, or a view of one: hand out a copy, taken before the updates overwrite the
        variables it shows. Arrays only this call made (fresh results, output pools) go as they are."""
        out = []
        for vid, source in self._out_ids:
            v = results[vid]
            if not source and v.base is None:
                source = any(v is a for a in self.graph.values.values()) or any(v is a for a in arrays.values())
            out.append(np.array(v) if source or v.base is not None else v)
        return out

    kernels = None  # the fused kernel groups (graphc.fusion.Kernel), for backends that fuse
    optimize_summary = None  # the graphc.passes.Summary of the passes run at compile time, if any

    def report(self):
        """What the compiler did, as a graphc.passes.Summary (print it): nodes before/after each
        pass, then a 'fuse' row: op nodes (one kernel each, unfused) -> fused kernels."""
        from graphc.passes.pipeline import Summary

        out = Summary(list(self.optimize_summary.rows) if self.optimize_summary is not None else [])
        ops = sum(1 for n in self.nodes if n.opdef.kind is not Kind.SOURCE)
        if self.kernels is not None:
            out.add("fuse", len(self.graph.nodes), len(self.graph.nodes), 0.0, ops, len(self.kernels))
        return out

    def summary(self) -> str:
        """What runs, one line per kernel (name, kind, node count, the values it writes); a
        backend that does not fuse runs each op node as its own kernel."""
        from graphc.fusion import summary

        if self.kernels is not None:
            return summary(self.kernels, self.graph)
        ops = [n for n in self.nodes if n.opdef.kind is not Kind.SOURCE]
        return "\n".join(
            f"{n.op + '#' + str(n.id):40s} {n.opdef.kind.value:15s} {1:3d} nodes -> {n.label}" for n in ops
        )

    def _repr_mimebundle_(self, include=None, exclude=None):
        """Jupyter's display: the compiled graph drawn (SVG with Graphviz's dot), else its text form."""
        from graphc.ir.graph import display_bundle

        return display_bundle(self, include, exclude)

    def execute(self, arrays: dict, env: dict) -> dict:
        """Compute every root; return {node id: array}. Backends implement this; an update that
        a backend wrote into its variable itself is returned as the variable's own array."""
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")


class Backend:
    """A backend compiles graphs into Executables; `options` names the keyword options its
    compile takes (gc.compile refuses any other, listing these)."""

    name = "?"
    options: tuple[str, ...] = ()

    def compile(self, graph, outputs=None, **options) -> Executable:
        raise NotImplementedError(f"backend {self.name} must implement compile()")


def check_options(backend, options: dict) -> None:
    """An OptionError naming every option `backend` does not take, and listing those it does."""
    unknown = [k for k in options if k not in backend.options]
    if unknown:
        loc = user_location()
        raise OptionError(
            f"compile: backend {backend.name!r} has no option {', '.join(map(repr, unknown))} "
            f"(its options: {', '.join(backend.options) or 'none'})" + (f" (called at {loc})" if loc else "")
        )


def compile(graph, backend: str = "reference", outputs=None, **options) -> Executable:
    """Compile `graph` for `backend` and return the step to call with input arrays.

    backend: 'reference' (the default: NumPy, node by node, nothing to compile; the oracle,
    for checking and debugging) or 'numba' (optimization passes, fused CPU kernels and a
    memory plan; compiles once, then runs fast: pick it to train, as nn.Model does).
    outputs: None (every named output, returned as a dict), a node or output name (one
    array) or a list of them (a list). apply_updates: None (default) writes the graph's
    updates only when outputs is None; a step asked for chosen outputs trains only with
    apply_updates=True. Other options: see each backend's `options` (passes, disable, trace).
    """
    cls = get_backend(backend)
    check_options(cls, options)
    return cls().compile(graph, outputs=outputs, **options)
