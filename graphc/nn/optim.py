"""Optimizers as graph ops: update rules are nodes, optimizer state is graph variables.

`apply_gradients` adds, inside the loss's graph, a step counter `<opt>/step` (float32
scalar: updates done so far), one state variable per parameter and slot
(`<opt>/<slot>/<param name>`), the update rule of every parameter, and a `g.update` for
each, so one run of the graph is one training step. Options common to all optimizers:
`lr`, `weight_decay`, `clip_norm` (clip all gradients together by their global L2 norm)
and `schedule` (a graphc.nn.schedules.Schedule evaluated in the graph from the step).
Clipping comes first, then weight decay, which applies to every trained parameter (choose
them with training_graph(..., params=)). Bad or unknown options raise AttributeValueError
naming the optimizer, the option and the user's line.
"""

import contextlib
import math

from graphc.errors import AttributeValueError, GraphStructureError, where
from graphc.ir import dtypes
from graphc.ir.graph import in_phase
from graphc.ir.location import user_location
from graphc.ir.node import Node
from graphc.ir.phase import Phase
from graphc.nn.schedules import check_schedule
from graphc.ops import api as F
from graphc.ops.registry import error

__all__ = ["Optimizer", "GD", "SGD", "Adam", "AdamW", "RMSprop", "get"]

_COMMON = ("weight_decay", "clip_norm", "schedule")


def _check_number(owner, option, v, lo, hi, lo_open, hi_open):
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        error(AttributeValueError, owner, f"option {option!r} must be a number in {rng}, got {v!r}")
    return float(v)


# option -> (lo, hi, lo_open, hi_open) for numeric options
_RANGES = {
    "lr": (0.0, math.inf, True, True),
    "momentum": (0.0, 1.0, False, True),
    "beta1": (0.0, 1.0, False, True),
    "beta2": (0.0, 1.0, False, True),
    "rho": (0.0, 1.0, False, True),
    "eps": (0.0, math.inf, True, True),
    "weight_decay": (0.0, math.inf, False, True),
    "clip_norm": (0.0, math.inf, True, True),
}


class Optimizer:
    """Base class. Subclasses set `slots` and implement `rule(p, grad, step)`.

    After `apply_gradients`: `.graph`, `.scope`, `.step` (the step variable node),
    `.state_names` (every optimizer variable, for checkpoints), `.grad_norm` (the global
    gradient norm node when clip_norm is set) and `.lr_node` (this step's learning rate).
    """

    name = "optimizer"
    decoupled_weight_decay = False

    def __init__(self, lr: float, **options):
        owner = type(self).__name__
        extra = {k: v for k, v in options.items() if k not in self._options()}
        if extra:
            bad = next(iter(extra))
            error(
                AttributeValueError, owner, f"unknown option {bad!r}; options are {', '.join(['lr', *self._options()])}"
            )
        values = {"lr": lr, "weight_decay": 0.0, "clip_norm": None, "schedule": None, **options}
        for k, v in values.items():
            if k == "schedule":
                v = check_schedule(owner, v)
            elif k == "nesterov":
                if not isinstance(v, bool):
                    error(AttributeValueError, owner, f"option 'nesterov' must be True or False, got {v!r}")
            elif k in _RANGES and not (k == "clip_norm" and v is None):
                v = _check_number(owner, k, v, *_RANGES[k])
            setattr(self, k, v)
        self.graph = None
        self.scope: str | None = None
        self.step: Node | None = None
        self.state_names: list[str] = []
        self.grad_norm: Node | None = None
        self.lr_node: Node | None = None
        self._per_dtype: dict[str, tuple[Node, Node]] = {}

    def _options(self) -> tuple[str, ...]:
        import inspect

        own = [p for p in inspect.signature(type(self).__init__).parameters if p not in ("self", "lr", "options")]
        return tuple(dict.fromkeys((*own, *_COMMON)))

    @property
    def config(self) -> dict:
        """The options, as plain values (the schedule as its repr): for checkpoints and logs."""
        out = {"optimizer": type(self).__name__, "lr": self.lr}
        for k in self._options():
            v = getattr(self, k)
            out[k] = repr(v) if k == "schedule" and v is not None else v
        return out

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k != "optimizer")
        return f"{type(self).__name__}({opts})"

    # -- building the update graph -------------------------------------------------------------
    def apply_gradients(self, grads: dict[str, Node], params: dict[str, Node], anchor: Node | None = None) -> dict:
        """Add the update of every parameter in `params` from `grads` (same keys); returns
        {variable name: update node}. With `anchor` (the loss), the nodes are tagged Phase.UPDATE."""
        owner = type(self).__name__
        if not params:
            error(GraphStructureError, owner, "there are no parameters to update")
        g = next(iter(params.values())).graph
        if self.graph is not None:
            raise GraphStructureError(
                f"{owner}: this optimizer already updates graph {self.graph.name!r}; make a new optimizer "
                "for another training graph" + where(user_location())
            )
        for name in params:
            if name not in grads:
                error(GraphStructureError, owner, f"no gradient given for parameter {name!r}")
            if name in g.updates:
                error(
                    GraphStructureError,
                    owner,
                    f"parameter {name!r} already has an update in graph {g.name!r} "
                    "(is training_graph called twice on it?)",
                )
        try:
            # A failure half-way removes the variables and updates made so far (undo_on_error).
            with g.undo_on_error(), g.scope(self.name, unique=True) as scope, _marked(anchor):
                self.graph, self.scope = g, scope
                self.step = self._variable("step", (), "float32")
                grads = self._clip({k: grads[k] for k in params})
                for name, p in params.items():
                    grad = F.cast(grads[name], p.dtype)
                    if self.weight_decay and not self.decoupled_weight_decay:
                        grad = grad + p * self.weight_decay  # L2 penalty folded into the gradient
                    g.update(p, F.cast(self.rule(p, grad, self._ctx(p.dtype)), p.dtype))
                g.update(self.step, self.step + 1.0)
        except BaseException:  # and the optimizer is unused again
            self.graph, self.scope, self.step, self.state_names = None, None, None, []
            raise
        return {k: g.updates[k] for k in [*params, *self.state_names]}

    def rule(self, p: Node, grad: Node, ctx) -> Node:
        """The parameter's new value; state goes through self.slot(...)."""
        raise NotImplementedError

    def _variable(self, name, shape, dtype, init="zeros") -> Node:
        node = self.graph.variable(name, shape, init, dtype)  # a source: tagged forward wherever declared
        self.state_names.append(node.name)
        return node

    def slot(self, slot: str, p: Node, new_value) -> tuple[Node, Node]:
        """A state variable `<opt>/<slot>/<param>` shaped like p, and its update.

        new_value(old) builds the new value from the old one; returns (old, new)."""
        var = self._variable(f"{slot}/{p.name}", p.shape, p.dtype)
        new = new_value(var)
        self.graph.update(var, F.cast(new, p.dtype))
        return var, new

    def _ctx(self, dtype: str):
        """(lr, t) for parameters of `dtype`: this step's learning rate and the 1-based step."""
        if dtype not in self._per_dtype:
            step = F.cast(self.step, dtype)
            if self.schedule is not None:
                lr = self.schedule(self.lr, step)
            else:
                lr = F.constant(self.lr, dtype, graph=step.graph)
            self._per_dtype[dtype] = (F.cast(lr, dtype), step + 1.0)
            if self.lr_node is None:
                self.lr_node = self._per_dtype[dtype][0]
        return self._per_dtype[dtype]

    def _clip(self, grads: dict[str, Node]) -> dict[str, Node]:
        """Scale all gradients by clip_norm / max(global norm, clip_norm).

        No epsilon (PyTorch divides by norm + 1e-6): the max never divides by zero, and a
        clipped gradient's norm is exactly clip_norm."""
        if self.clip_norm is None:
            return grads
        dt = "float32"
        for gr in grads.values():
            dt = dtypes.promote(dt, gr.dtype) if dtypes.is_float(gr.dtype) else dt
        total = None
        for gr in grads.values():
            gr = F.cast(gr, dt)
            sq = F.sum(gr * gr)
            total = sq if total is None else total + sq
        self.grad_norm = F.sqrt(total)
        scale = self.clip_norm / F.maximum(self.grad_norm, self.clip_norm)
        return {k: gr * F.cast(scale, gr.dtype) for k, gr in grads.items()}


def _marked(anchor):
    """Update-rule nodes are tagged Phase.UPDATE: text views and drawings show them with the
    backward half of the training step, but not as the backward of anything."""
    return in_phase(Phase.UPDATE) if anchor is not None else contextlib.nullcontext()


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, PyTorch's formulation:
    v = momentum * v + g;  p -= lr * (g + momentum * v if nesterov else v)."""

    name = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, **options):
        super().__init__(lr, momentum=momentum, nesterov=nesterov, **options)
        if self.nesterov and self.momentum == 0:
            error(AttributeValueError, type(self).__name__, "option 'nesterov' needs a momentum > 0")

    def rule(self, p, grad, ctx):
        lr, _ = ctx
        if self.momentum == 0:
            return p - lr * grad
        mu = self.momentum
        _, v = self.slot("velocity", p, lambda v: v * mu + grad)
        return p - lr * (grad + v * mu if self.nesterov else v)


class GD(Optimizer):
    """Plain gradient descent: p -= lr * g."""

    name = "gd"

    def __init__(self, lr: float = 0.01, **options):
        super().__init__(lr, **options)

    def rule(self, p, grad, ctx):
        return p - ctx[0] * grad


class Adam(Optimizer):
    """Adam with bias correction (t counts from 1):
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    weight_decay adds weight_decay * p to g (L2); AdamW decouples it."""

    name = "adam"

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, **options):
        super().__init__(lr, beta1=beta1, beta2=beta2, eps=eps, **options)

    def rule(self, p, grad, ctx):
        lr, t = ctx
        b1, b2 = self.beta1, self.beta2
        _, m = self.slot("m", p, lambda m: m * b1 + grad * (1.0 - b1))
        _, v = self.slot("v", p, lambda v: v * b2 + grad * grad * (1.0 - b2))
        m_hat = m / (1.0 - F.pow(F.constant(b1, p.dtype, graph=p.graph), t))
        v_hat = v / (1.0 - F.pow(F.constant(b2, p.dtype, graph=p.graph), t))
        new = p - lr * m_hat / (F.sqrt(v_hat) + self.eps)
        if self.decoupled_weight_decay and self.weight_decay:
            new = new - lr * self.weight_decay * p
        return new


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p -= lr * weight_decay * p
    beside the Adam step, instead of adding the decay to the gradient."""

    name = "adamw"
    decoupled_weight_decay = True

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        **options,
    ):
        super().__init__(lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, **options)


class RMSprop(Optimizer):
    """s = rho s + (1 - rho) g^2;  p -= lr * g / (sqrt(s) + eps)
    (with momentum: b = momentum b + g / (sqrt(s) + eps);  p -= lr * b).

    eps is added after the square root, as in PyTorch (whose defaults are lr=1e-2, alpha=0.99);
    Keras adds its epsilon (1e-7) inside it. See docs/nn.md."""

    name = "rmsprop"

    def __init__(self, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-8, momentum: float = 0.0, **options):
        super().__init__(lr, rho=rho, eps=eps, momentum=momentum, **options)

    def rule(self, p, grad, ctx):
        lr, _ = ctx
        rho = self.rho
        _, s = self.slot("square_avg", p, lambda s: s * rho + grad * grad * (1.0 - rho))
        step = grad / (F.sqrt(s) + self.eps)
        if self.momentum:
            mu = self.momentum
            _, step = self.slot("momentum", p, lambda b: b * mu + step)
        return p - lr * step


_BY_NAME = {"gd": GD, "sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(optimizer, **options) -> Optimizer:
    """An optimizer from an instance, or a name ('adam', 'sgd', ...) and options."""
    if isinstance(optimizer, Optimizer):
        if options:
            error(AttributeValueError, "optimizer", "options are given to the optimizer's constructor, not here")
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _BY_NAME:
        return _BY_NAME[optimizer.lower()](**options)
    error(
        AttributeValueError,
        "optimizer",
        f"unknown optimizer {optimizer!r}; expected an Optimizer or one of {', '.join(_BY_NAME)}",
    )
