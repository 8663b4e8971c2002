"""The Layer protocol, activations by name, and Sequential composition.

A layer is a Python object that adds graph pieces when called on a node. On its first
call it opens a unique name scope in the node's graph, infers its input sizes from the
node's shape, and creates its parameters there (`<scope>/w`, `<scope>/b`, ...). Later calls
reuse the same parameter nodes, so a training call (`training=True`) and an evaluation call
(`training=False`) of one network share weights inside one graph.
"""

import re

from graphc.errors import AttributeValueError, DTypeError, GraphStructureError, ShapeError, where
from graphc.ir import dtypes
from graphc.ir.location import user_location
from graphc.ir.node import Node
from graphc.ops import api as F
from graphc.ops.registry import error

__all__ = ["Layer", "Sequential", "Activation", "Lambda", "get_activation", "ACTIVATIONS"]

ACTIVATIONS = {
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "softmax": F.softmax,
    "log_softmax": F.log_softmax,
    "leaky_relu": F.leaky_relu,
    "gelu": F.gelu,
    "softplus": F.softplus,
}
_IDENTITY = (None, "linear", "identity", "none")


def get_activation(activation, owner: str = "Activation"):
    """The function for an activation name or callable; None for the identity."""
    if activation in _IDENTITY:
        return None
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            error(
                AttributeValueError,
                owner,
                f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}, "
                "'linear', or a function of a node",
            )
        return ACTIVATIONS[activation]
    if callable(activation):
        return activation
    error(AttributeValueError, owner, f"activation must be a name or a function, got {activation!r}")


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()  # MaxPool2D -> max_pool2d


def check_int(owner: str, what: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        error(AttributeValueError, owner, f"{what} must be an int >= {minimum}, got {value!r}")
    return value


def check_pair(owner: str, what: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (height, width)."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        error(AttributeValueError, owner, f"{what} must be an int or a pair of ints, got {value!r}")
    for v in pair:
        check_int(owner, what, v, minimum)
    return tuple(pair)


class Layer:
    """Base class. Subclasses implement `build(x)` (create parameters) and `forward(x, training)`.

    After the first call: `.graph`, `.scope` (the unique name scope), `.params` (trainable
    parameters, graph name -> Node) and `.state` (non-trainable variables such as running
    statistics) are set. `signature(x)` says what later inputs must share with the first one.
    """

    def __init__(self, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            msg = f"name must be a non-empty string without '/', got {name!r}"
            error(AttributeValueError, type(self).__name__, msg)
        self.name = name or _snake(type(self).__name__)
        self.graph = None
        self.scope: str | None = None
        self.params: dict[str, Node] = {}
        self.state: dict[str, Node] = {}
        self._signature = None
        self._input_type = None

    # -- what subclasses implement ------------------------------------------------------------
    def build(self, x: Node) -> None:
        """Validate the first input and create parameters (inside the layer's scope)."""

    def forward(self, x: Node, training: bool) -> Node:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def signature(self, x: Node):
        """What must stay the same between calls (feature sizes, dtype); None: anything goes."""
        return None

    # -- calling ------------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.graph is not None

    @property
    def variables(self) -> dict[str, Node]:
        return {**self.params, **self.state}

    def __call__(self, x: Node, training: bool = False) -> Node:
        x = self._check_input(x)
        g = x.graph
        if self.graph is None:
            fresh = self._fresh_layers()
            # A first call that fails leaves no parameters, updates or half-built layer behind.
            with g.undo_on_error(), g.scope(self.name, unique=True) as scope:
                try:
                    self.graph, self.scope = g, scope
                    self._signature, self._input_type = self.signature(x), x.type_str
                    self.build(x)
                    return self.forward(x, bool(training))
                except BaseException:
                    for layer in fresh:
                        layer._unbuild()
                    raise
        if g is not self.graph:
            raise GraphStructureError(
                f"{self._what()} was built in graph {self.graph.name!r} and cannot be called on a node of "
                f"graph {g.name!r}; make a new layer for the other graph" + where(user_location())
            )
        sig = self.signature(x)
        if sig != self._signature:
            raise ShapeError(
                f"{self._what()} was built for inputs {self._input_type} but is now called with "
                f"{x.type_str}{self._mismatch(sig)}" + where(user_location())
            )
        with g.at_scope(self.scope):
            return self.forward(x, bool(training))

    def _mismatch(self, sig) -> str:
        return ""

    def _fresh_layers(self) -> list["Layer"]:
        """This layer and the not-yet-built layers inside it (undone together if building fails)."""
        return [self]

    def _unbuild(self) -> None:
        # The graph's side is undone by g.undo_on_error() in __call__; this is the layer's.
        self.graph, self.scope, self._signature = None, None, None
        self.params, self.state = {}, {}

    def _check_input(self, x) -> Node:
        if not isinstance(x, Node):
            error(GraphStructureError, self._what(), f"expects a graph node, got {type(x).__name__}")
        return x

    def _what(self) -> str:
        return f"{type(self).__name__} {self.scope or self.name!r}"

    # -- helpers for subclasses ---------------------------------------------------------------
    def add_param(self, name: str, shape, init, dtype: str, trainable: bool = True) -> Node:
        node = self.graph.param(name, shape, init, dtype, trainable)
        (self.params if trainable else self.state)[node.name] = node
        return node

    def float_dtype(self, x: Node, dtype: str | None) -> str:
        """Parameters follow a float input's dtype unless the layer was given one."""
        self.need_float(x)
        return x.dtype if dtype is None else dtypes.canonical(dtype)

    def need_float(self, x: Node) -> None:
        if not dtypes.is_float(x.dtype):
            raise DTypeError(
                f"{self._what()} needs a float input, got {x.type_str}; cast it first" + where(user_location())
            )

    def need_rank(self, x: Node, ranks, layout: str) -> None:
        if x.ndim not in ranks:
            raise ShapeError(f"{self._what()} expects {layout} input, got {x.type_str}" + where(user_location()))

    def need_concrete(self, x: Node, axis: int, what: str) -> int:
        d = x.shape[axis]
        if not isinstance(d, int):
            raise ShapeError(
                f"{self._what()} needs a concrete {what} (axis {axis % x.ndim}) to size its parameters, "
                f"got {x.type_str}" + where(user_location())
            )
        return d

    def __repr__(self):
        state = f"built in {self.graph.name!r} as {self.scope!r}" if self.built else "not built"
        return f"<{type(self).__name__} {self.name!r}, {state}>"


class Activation(Layer):
    """An activation as a layer: Activation("relu"), or any function of a node."""

    def __init__(self, activation, name: str | None = None):
        self.fn = get_activation(activation, "Activation")
        if name is None and isinstance(activation, str):
            name = activation
        super().__init__(name)
        self.activation = activation

    def forward(self, x, training):
        return x if self.fn is None else self.fn(x)


class Lambda(Layer):
    """A parameter-free function of a node, as a layer (e.g. lambda x: x * 2)."""

    def __init__(self, fn, name: str | None = None):
        if not callable(fn):
            error(AttributeValueError, "Lambda", f"expects a function of a node, got {fn!r}")
        super().__init__(name or _snake(getattr(fn, "__name__", "lambda").strip("<>")) or "lambda")
        self.fn = fn

    def forward(self, x, training):
        y = self.fn(x)
        if not isinstance(y, Node):  # else the next layer, or the caller, gets a non-node to puzzle over
            error(GraphStructureError, self._what(), f"its function returned {type(y).__name__}, not a graph node")
        return y


class Sequential(Layer):
    """Layers applied in order; its scope names its layers' parameters (`cnn/dense/w`)."""

    def __init__(self, layers=(), name: str | None = None):
        super().__init__(name)
        self.layers: list[Layer] = []
        for layer in layers:
            self.add(layer)

    def add(self, layer) -> "Sequential":
        if self.built:
            error(GraphStructureError, "Sequential", f"{self.name!r} is already built; layers cannot be added now")
        if not isinstance(layer, Layer):
            if isinstance(layer, str) or not callable(layer):
                error(AttributeValueError, "Sequential", f"expects layers, got {layer!r}")
            layer = Lambda(layer)
        if any(layer is other for other in self.layers):
            error(AttributeValueError, "Sequential", f"layer {layer.name!r} appears twice in {self.name!r}")
        self.layers.append(layer)
        return self

    def forward(self, x, training):
        for layer in self.layers:
            x = layer(x, training=training)
        return x

    def _fresh_layers(self):
        out = [self]
        for layer in self.layers:
            if not layer.built:
                out += layer._fresh_layers()
        return out

    def __call__(self, x, training: bool = False):
        out = super().__call__(x, training)
        self.params = {k: v for layer in self.layers for k, v in layer.params.items()}
        self.state = {k: v for layer in self.layers for k, v in layer.state.items()}
        return out

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def summary(self) -> str:
        """One line per layer: scope, kind and parameter shapes (after the first call)."""
        lines = [f"Sequential {self.scope or self.name}"]
        for layer in self.layers:
            shapes = ", ".join(f"{k.rsplit('/', 1)[-1]}{list(v.shape)}" for k, v in layer.variables.items())
            lines.append(f"  {layer.scope or layer.name:<28} {type(layer).__name__:<12} {shapes}")
        total = sum(_numel(v) for v in self.params.values())
        lines.append(f"  trainable parameters: {total}")
        return "\n".join(lines)


def _numel(node) -> int:
    n = 1
    for d in node.shape:
        n *= d
    return n
