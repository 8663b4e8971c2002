"""The Graph: a container of nodes with named inputs, parameters, outputs and updates."""

import contextlib
import threading
import zlib

import numpy as np

from graphc.errors import AttributeValueError, GraphStructureError, ShapeError, where
from graphc.ir import dtypes, shapes
from graphc.ir.init import initial_value
from graphc.ir.location import user_location
from graphc.ir.node import Attrs, Node, TupleNode, TupleType
from graphc.ir.phase import Phase

_state = threading.local()


def _stack(name):
    if not hasattr(_state, name):
        setattr(_state, name, [])
    return getattr(_state, name)


def current_graph(required: bool = True):
    """The innermost `with graph:` block's graph."""
    stack = _stack("graphs")
    if stack:
        return stack[-1]
    if required:
        raise GraphStructureError(
            "no graph to add this node to: declare nodes inside `with graph:` or from existing nodes"
        )
    return None


def in_phase(phase: Phase, of: Node | None = None):
    """Nodes made inside this block are tagged `phase`. For Phase.BACKWARD, `of` is the forward
    node they differentiate: they take its label (as `grad_of`), its scope and its source line."""
    if not isinstance(phase, Phase):
        raise AttributeValueError(
            f"phase: expected a graphc.ir.Phase (FORWARD, BACKWARD or UPDATE), got {phase!r}" + where(user_location())
        )
    return _phase_block(phase, of)


@contextlib.contextmanager
def _phase_block(phase: Phase, of: Node | None):
    stack = _stack("phase")
    stack.append((phase, of))
    try:
        yield
    finally:
        stack.pop()


def backward_of(node: Node):
    """Nodes made inside this block are the backward of `node` (used by autodiff)."""
    return in_phase(Phase.BACKWARD, node)


def current_phase() -> tuple[Phase, Node | None]:
    """(phase, forward node) of the innermost in_phase block; (FORWARD, None) outside any."""
    stack = _stack("phase")
    return stack[-1] if stack else (Phase.FORWARD, None)


def _current_backward():
    """The forward node whose backward is being built, or None."""
    phase, of = current_phase()
    return of if phase is Phase.BACKWARD else None


class Graph:
    """A static computation graph.

    Declare it inside `with Graph("name") as g:` using `g.input`, `g.param` and ops;
    name its results with `g.output(name, node)`. Parameters' current values live in
    `g.values`, keyed by parameter name; `g.updates` maps a variable name to the node
    that computes its next value (optimizers fill it).

    A body (graphc.ir.subgraph.trace) is a Graph with an `enclosing` graph: while it is traced,
    reading a node of an enclosing graph captures it as an input of the body (`captures`).
    """

    def __init__(self, name: str = "graph", seed: int = 0, enclosing: "Graph | None" = None):
        self.name = name
        self.enclosing = enclosing
        self.tracing = False  # True while a body's function runs: ops add their nodes here
        self.sealed = False  # True once a body is traced: it takes no new nodes
        self.captures: list[tuple[Node, Node]] = []  # (node of the enclosing graph, input standing for it)
        self._captured: dict[int, Node] = {}
        self.seed = int(seed)
        self.nodes: list[Node] = []
        self.inputs: dict[str, Node] = {}
        self.params: dict[str, Node] = {}
        self.values: dict[str, np.ndarray] = {}
        self.outputs: dict[str, Node] = {}
        self.updates: dict[str, Node] = {}
        self._scope: list[str] = []
        self._scope_counts: dict[str, int] = {}

    # -- context -----------------------------------------------------------------------
    def __enter__(self):
        _stack("graphs").append(self)
        return self

    def __exit__(self, *exc):
        _stack("graphs").pop()

    def phase(self, phase: Phase):
        """`with g.phase(Phase.UPDATE):` tags the nodes made inside (see in_phase)."""
        return in_phase(phase)

    @contextlib.contextmanager
    def scope(self, name: str, unique: bool = False):
        """Name scope: nodes and parameters declared inside carry `name` (nested with '/')."""
        if unique:
            name = self.unique_scope_name(name)
        self._scope.append(name)
        try:
            yield "/".join(self._scope)
        finally:
            self._scope.pop()

    def unique_scope_name(self, base: str) -> str:
        full = "/".join([*self._scope, base])
        n = self._scope_counts.get(full, 0)
        self._scope_counts[full] = n + 1
        return base if n == 0 else f"{base}_{n}"

    @property
    def current_scope(self) -> str:
        return "/".join(self._scope)

    def _qualified(self, name: str) -> str:
        return "/".join([*self._scope, name])

    @contextlib.contextmanager
    def at_scope(self, path: str):
        """Re-enter a scope by its full path (a layer's recorded `scope`), whatever scope is open now."""
        saved = self._scope
        self._scope = path.split("/") if path else []
        try:
            yield path
        finally:
            self._scope = saved

    @property
    def scope_counts(self) -> dict[str, int]:
        """How often each scope path was opened with unique=True (a copy; graph files save it)."""
        return dict(self._scope_counts)

    def reserve_scope_names(self, counts) -> None:
        """Count the scope names in `counts` (a scope_counts of another graph, or of a graph file)
        as taken, so later unique scopes here do not reuse them."""
        for path, n in counts.items():
            self._scope_counts[path] = max(self._scope_counts.get(path, 0), int(n))

    @contextlib.contextmanager
    def undo_on_error(self):
        """If the block raises, the parameters, variables and updates it added are removed again
        (and the updates it replaced restored), and the unique scope names it took are free again:
        a layer or an optimizer that fails half-way leaves no variable or name behind. Nodes it
        made stay, unreachable from any output or update."""
        params, updates, counts = set(self.params), dict(self.updates), dict(self._scope_counts)
        try:
            yield
        except BaseException:
            for name in [k for k in self.params if k not in params]:
                del self.params[name]
                self.values.pop(name, None)
            self.updates.clear()
            self.updates.update(updates)
            self._scope_counts = counts
            raise

    # -- node creation -----------------------------------------------------------------
    def _add(self, op, inputs, attrs, shape, dtype, name=None, location=None, phase=None) -> Node:
        """A new node; `shape` may be a TupleType (then dtype is None) for an op with several outputs.
        Its phase is the innermost in_phase block's, unless `phase` is given."""
        if self.sealed:
            raise GraphStructureError(
                f"{op}: graph {self.name!r} is a traced body and takes no new nodes; build on the "
                f"body's results outside it" + where(location)
            )
        for x in inputs:
            if x.graph is not self:
                raise GraphStructureError(
                    f"{op}: input {x.label} belongs to graph {x.graph.name!r}, not {self.name!r}" + where(location)
                )
        current, of = current_phase()
        phase = current if phase is None else phase
        scope, grad_of = self.current_scope, None
        if phase is Phase.BACKWARD and of is not None:
            # A backward node belongs where its forward node was declared: same line, same scope.
            location, scope, grad_of = location or of.location, of.scope, of.label
        if isinstance(shape, TupleType):
            node = TupleNode(self, len(self.nodes), op, inputs, attrs, shape, name, scope, location, phase, grad_of)
        else:
            node = Node(self, len(self.nodes), op, inputs, attrs, shape, dtype, name, scope, location, phase, grad_of)
        self.nodes.append(node)
        return node

    def own(self, x: Node, op: str, location=None) -> Node:
        """x itself if it is a node of this graph; in a body being traced, a node of an enclosing
        graph is captured: the body gets an input standing for it (one per captured node)."""
        if x.graph is self:
            return x
        if self.enclosing is None or not self.tracing or not self._encloses(x.graph):
            raise GraphStructureError(
                f"{op}: input {x.label} belongs to graph {x.graph.name!r}, which is neither the graph "
                f"being built ({self.name!r}) nor one enclosing it" + where(location)
            )
        if id(x) in self._captured:
            return self._captured[id(x)]
        if x.is_tuple:
            raise GraphStructureError(
                f"{op}: a body cannot capture {x.label}, which has several outputs; read the output it "
                f"needs (graphc.tuple_get) outside the body" + where(location)
            )
        outer = x if x.graph is self.enclosing else self.enclosing.own(x, op, location)
        name, k = x.label, 1
        while name in self.inputs:
            name, k = f"{x.label}_{k}", k + 1
        placeholder = self._add("input", (), {"name": name}, x.shape, x.dtype, name, x.location, Phase.FORWARD)
        self.inputs[name] = placeholder
        self._captured[id(x)] = placeholder
        self.captures.append((outer, placeholder))
        return placeholder

    def _encloses(self, other: "Graph") -> bool:
        g = self.enclosing
        while g is not None:
            if g is other:
                return True
            g = g.enclosing
        return False

    def input(self, name: str, shape, dtype: str = dtypes.DEFAULT_FLOAT) -> Node:
        """A named graph input; dimensions may be symbolic names bound when the graph runs."""
        loc = user_location()
        if name in self.inputs or name in self.params:
            raise GraphStructureError(f"input {name!r} is declared twice" + where(loc))
        shape = shapes.normalize(shape, f"input {name!r}")
        node = self._add("input", (), {"name": name}, shape, dtypes.canonical(dtype), name, loc, Phase.FORWARD)
        self.inputs[name] = node
        return node

    def param(
        self, name: str, shape, init="glorot_uniform", dtype: str = dtypes.DEFAULT_FLOAT, trainable: bool = True
    ) -> Node:
        """A parameter (trainable=True) or state variable, initialised now and kept in `values`."""
        loc = user_location()
        full = self._qualified(name)
        if full in self.params or full in self.inputs:
            raise GraphStructureError(f"parameter {full!r} is declared twice" + where(loc))
        shape = shapes.normalize(shape, f"parameter {full!r}")
        if not shapes.is_concrete(shape):
            raise ShapeError(f"parameter {full!r}: shape {shapes.fmt(shape)} must be concrete" + where(loc))
        dtype = dtypes.canonical(dtype)
        rng = np.random.default_rng([self.seed, zlib.crc32(full.encode())])
        value, desc = initial_value(init, shape, dtype, rng, f"parameter {full!r}" + where(loc))
        attrs = {"name": full, "init": desc, "trainable": bool(trainable)}
        node = self._add("param", (), attrs, shape, dtype, full, loc, Phase.FORWARD)
        self.params[full] = node
        self.values[full] = value
        return node

    def variable(self, name: str, shape, init="zeros", dtype: str = dtypes.DEFAULT_FLOAT) -> Node:
        """Non-trainable state (optimizer moments, running averages)."""
        return self.param(name, shape, init, dtype, trainable=False)

    def output(self, name: str, node: Node, replace: bool = False) -> Node:
        """Name `node` as a result of the graph; naming a second node with a taken name is an
        error unless replace=True."""
        if not isinstance(node, Node) or node.graph is not self:
            raise GraphStructureError(f"output {name!r} must be a node of graph {self.name!r}, got {node!r}")
        if node.is_tuple:
            raise GraphStructureError(
                f"output {name!r}: {node.label} has {len(node.types)} outputs; name one of them "
                f"(graphc.tuple_get(node, index))" + where(user_location())
            )
        old = self.outputs.get(name)
        if old is not None and old is not node and not replace:
            raise GraphStructureError(
                f"output {name!r} of graph {self.name!r} is already {old.label}{where(old.location)}; "
                f"pass replace=True to make it {node.label}" + where(user_location())
            )
        self.outputs[name] = node
        return node

    def update(self, variable: str | Node, node: Node) -> None:
        """After each run, store `node`'s value into the variable (in place)."""
        var = variable.name if isinstance(variable, Node) else variable
        if var not in self.params:
            raise GraphStructureError(f"update: {var!r} is not a parameter or variable of {self.name!r}")
        p = self.params[var]
        if not isinstance(node, Node) or node.graph is not self or node.is_tuple:
            raise GraphStructureError(f"update of {var!r}: the new value must be a single-output node of {self.name!r}")
        if node.shape != p.shape or node.dtype != p.dtype:
            raise ShapeError(
                f"update of {var!r}: new value is {node.type_str} but the variable is {p.type_str}"
                + where(node.location)
            )
        self.updates[var] = node

    # -- views ---------------------------------------------------------------------------
    def trainable(self) -> dict[str, Node]:
        return {k: v for k, v in self.params.items() if v.attrs["trainable"]}

    def roots(self) -> list[Node]:
        return [*self.outputs.values(), *self.updates.values()]

    def live_nodes(self, roots=None) -> list[Node]:
        """Nodes the roots depend on, in declaration (topological) order."""
        roots = self.roots() if roots is None else list(roots)
        seen, stack = set(), list(roots)
        while stack:
            n = stack.pop()
            if n.id in seen:
                continue
            seen.add(n.id)
            stack.extend(n.inputs)
        return [n for n in self.nodes if n.id in seen]

    def text(self, roots=None, backward: bool | None = None) -> str:
        from graphc.ir.text import graph_text

        return graph_text(self, roots, backward)

    def __str__(self):
        return self.text()

    def __repr__(self):
        return (
            f"<Graph {self.name!r}: {len(self.nodes)} nodes, {len(self.inputs)} inputs, "
            f"{len(self.params)} params, {len(self.outputs)} outputs>"
        )

    def _repr_mimebundle_(self, include=None, exclude=None):
        """Jupyter's display: the drawing as SVG when Graphviz's dot is installed, else the text form."""
        return display_bundle(self, include, exclude)

    def to_networkx(self, roots=None):
        from graphc.ir.nx import to_networkx

        return to_networkx(self, roots)

    def save(self, path) -> None:
        """Write the graph to `path` (JSON) and its arrays beside it (.npz): graphc.io.save_graph."""
        _files().save_graph(self, path)

    @staticmethod
    def load(path) -> "Graph":
        """Rebuild a graph saved by Graph.save: graphc.io.load_graph."""
        return _files().load_graph(path)


# The graph file format lives in graphc.io, which builds on the IR: it registers itself here when
# imported (`import graphc` imports it), so the IR never imports graphc.io.
_file_format = None


def use_file_format(files) -> None:
    """Called by graphc.io on import: `files.save_graph(graph, path)` and `files.load_graph(path)`
    back Graph.save and Graph.load."""
    global _file_format
    _file_format = files


def _files():
    if _file_format is None:
        raise GraphStructureError("no graph file format is registered: import graphc (or graphc.io) first")
    return _file_format


# Notebook display lives in graphc.viz, which builds on the IR: it registers itself here when
# imported (`import graphc` imports it); graphs, compiled steps and models delegate to it.
_display = None


def use_display(display) -> None:
    """Called by graphc.viz on import: `display(obj, include, exclude)` makes a Jupyter mime bundle."""
    global _display
    _display = display


def display_bundle(obj, include=None, exclude=None) -> dict:
    """obj's Jupyter mime bundle from the registered display (the text form if none is)."""
    if _display is None:
        return {"text/plain": str(obj)}
    return _display(obj, include, exclude)


def make_attrs(d) -> Attrs:
    return d if isinstance(d, Attrs) else Attrs(d)
