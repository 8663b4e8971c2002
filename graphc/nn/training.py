"""The training graph: forward, backward and parameter updates in one graph.

tg = nn.training_graph(loss, nn.optim.Adam(1e-3))
step = tg.compile("reference")     # each call: forward + backward + in-place updates
print(tg.backward_text())
"""

from dataclasses import dataclass, field

from graphc.autodiff import grad as _grad
from graphc.errors import AttributeValueError, GradientError, GraphStructureError, where
from graphc.ir import dtypes
from graphc.ir.location import user_location
from graphc.ir.node import Node
from graphc.nn import optim as _optim
from graphc.ops.registry import error

__all__ = ["TrainingGraph", "training_graph"]


@dataclass
class TrainingGraph:
    """The result of training_graph(): the graph (now holding gradients and updates) and its parts.

    grads: {parameter name: gradient node}; updates: {variable name: new-value node} for the
    parameters and the optimizer state; state_names: the optimizer's variables. reduction (with
    distributed=True): the one all-reduce and the reduced gradients the optimizer reads.
    """

    graph: object
    loss: Node
    grads: dict[str, Node]
    optimizer: _optim.Optimizer
    params: dict[str, Node]
    updates: dict[str, Node] = field(default_factory=dict)
    reduction: object = None  # graphc.distributed.gradients.Reduction when distributed

    @property
    def state_names(self) -> list[str]:
        return list(self.optimizer.state_names)

    @property
    def step(self) -> Node:
        """The optimizer's step counter variable (updates done so far)."""
        return self.optimizer.step

    def _forward_roots(self):
        other = [n for k, n in self.graph.updates.items() if k not in self.updates]  # e.g. running stats
        return [self.loss, *self.graph.outputs.values(), *other]

    def forward_text(self) -> str:
        """The forward pass: the loss, the graph's outputs and state updates such as running stats."""
        return self.graph.text(self._forward_roots(), backward=False)

    def backward_text(self) -> str:
        """Gradients and the optimizer's update rules (the nodes made after the forward pass)."""
        return self.graph.text(list(self.updates.values()), backward=True)

    def text(self) -> str:
        return self.graph.text([*self._forward_roots(), *self.updates.values()])

    def compile(self, backend: str = "reference", outputs=None, **options):
        """The training step: gc.compile the graph with apply_updates=True (unless options say
        otherwise), so each call trains; by default the step returns the loss. To evaluate
        without training, gc.compile(tg.graph, outputs=[...]) (updates are then off)."""
        from graphc.backends import compile as _compile

        options.setdefault("apply_updates", True)
        return _compile(self.graph, backend=backend, outputs=[self.loss] if outputs is None else outputs, **options)


def training_graph(loss: Node, optimizer, params=None, distributed: bool = False, weight=None) -> TrainingGraph:
    """Differentiate `loss` and add the optimizer's updates to its graph.

    params: the parameters to train (nodes or names); default, every trainable parameter
    the loss depends on. optimizer: an Optimizer, or a name ('adam', 'sgd', ...).
    distributed: data-parallel over the processes of graphc.distributed.world(): the gradients,
    the other state updates (running averages) and the loss are all-reduced in one flat buffer
    before the optimizer (graphc.distributed.gradients). weight: a scalar node, this rank's
    sample count, for the mean over the global batch; None averages the ranks equally.
    """
    if not isinstance(loss, Node):
        error(GradientError, "training_graph", f"loss must be a graph node, got {type(loss).__name__}")
    if loss.shape != () or not dtypes.is_float(loss.dtype):
        msg = f"loss must be a float scalar, got {loss.type_str}{where(loss.location)}"
        error(GradientError, "training_graph", msg)
    opt = _optim.get(optimizer)
    g = loss.graph
    chosen = _params(g, loss, params)
    trained = {k: p for k, p in chosen.items() if p.name not in g.updates}
    if len(trained) < len(chosen):
        taken = ", ".join(sorted(set(chosen) - set(trained)))
        raise GraphStructureError(
            f"training_graph: parameters {taken} already have updates in graph {g.name!r}; "
            "a graph holds one training step (declare another graph for another one)" + where(user_location())
        )
    grads = dict(zip(chosen, _grad(loss, list(chosen.values()))))
    reduction = None
    if distributed:
        from graphc.distributed.gradients import reduce_step

        # One all-reduce between the gradients and the optimizer: clipping then sees the global norm.
        reduction = reduce_step(loss, grads, weight)
    updates = opt.apply_gradients(grads if reduction is None else reduction.grads, chosen, anchor=loss)
    return TrainingGraph(g, loss, grads, opt, chosen, updates, reduction)


def _params(g, loss, params) -> dict[str, Node]:
    if params is None:
        live = {n.id for n in g.live_nodes([loss])}
        out = {k: p for k, p in g.trainable().items() if p.id in live}
        if not out:
            error(GradientError, "training_graph", f"the loss does not depend on any trainable parameter of {g.name!r}")
        return out
    if isinstance(params, dict):
        params = list(params.values())
    out = {}
    for p in params:
        node = g.params.get(p) if isinstance(p, str) else p
        if not isinstance(node, Node) or not node.is_param or node.graph is not g:
            error(AttributeValueError, "training_graph", f"{p!r} is not a parameter of graph {g.name!r}")
        if not node.attrs["trainable"]:
            msg = f"{node.name!r} is a state variable, not a trainable parameter"
            error(AttributeValueError, "training_graph", msg)
        out[node.name] = node
    if not out:
        error(AttributeValueError, "training_graph", "params is empty")
    return out
