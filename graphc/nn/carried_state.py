"""A network called with its recurrent layers' state carried in and out of the graph.

A stateful model (`nn.Model(..., stateful=True)`) calls its network through `CarriedState`:
each recurrent layer (SimpleRNN, LSTM, GRU) reached through Sequential starts from a graph
input `state/<layer scope>/<leaf>` (leaf h, and c for an LSTM; (batch, units), or
(num_layers, batch, units) for a stacked layer) and its final state becomes a graph output.
Feeding one call's final state as the next call's initial state carries the state from one
window of a sequence to the next; the gradient stops between them, since a fed value has no
graph behind it (truncated backpropagation through time). The same graph, fed one step at a
time, is the compiled single-step graph that generation runs.
"""

from dataclasses import dataclass

from graphc.errors import AttributeValueError, GraphStructureError, where
from graphc.ir.location import user_location
from graphc.ir.node import Node
from graphc.nn.layers.base import Layer, Sequential

__all__ = ["STATE", "StateLeaf", "CarriedState"]

STATE = "state/"  # the prefix of the state inputs' names (and, after train/ or eval/, of the outputs')


@dataclass(frozen=True)
class StateLeaf:
    """One carried value: the graph input that starts it and the name of its final value's outputs."""

    name: str  # state/<layer scope>/<leaf>: the input's name, and the outputs' after train/, eval/
    input: Node


class CarriedState:
    """The state inputs of one graph's recurrent layers, shared by every call of the network."""

    def __init__(self):
        self.leaves: list[StateLeaf] = []
        self._inputs: dict[int, tuple[Node, ...]] = {}  # id(layer) -> its state inputs

    def call(self, net: Layer, x: Node, training: bool) -> tuple[Node, dict[str, Node]]:
        """net(x) with every recurrent layer's state carried: (output, {state name: final value}).

        The network must be built (called once) first, so that its layers have their scopes."""
        finals: dict[str, Node] = {}
        out = self._walk(net, x, bool(training), finals)
        if not finals:
            raise GraphStructureError(
                f"stateful model: the network {type(net).__name__} {net.scope or net.name!r} has no recurrent layer "
                "(SimpleRNN, LSTM, GRU) directly or inside Sequential, so there is no state to carry"
                + where(user_location())
            )
        return out, finals

    def _walk(self, layer, x, training, finals):
        from graphc.nn.layers.recurrent import Recurrent

        if isinstance(layer, Recurrent):
            return self._recurrent(layer, x, training, finals)
        if isinstance(layer, Sequential):
            for sub in layer.layers:
                x = self._walk(sub, x, training, finals)
            return x
        return layer(x, training=training)

    def _recurrent(self, layer, x: Node, training: bool, finals: dict) -> Node:
        if layer.bidirectional:
            raise AttributeValueError(
                f"stateful model: {type(layer).__name__} {layer.scope!r} is bidirectional; its reverse direction "
                "starts from the end of each window, so its state cannot be carried to the next one"
                + where(user_location())
            )
        inputs = self._inputs.get(id(layer)) or self._declare(layer, x)
        wanted = layer.return_state
        layer.return_state = True  # the call gives its final state too (restored below)
        try:
            out, state = layer(x, training=training, initial_state=inputs[0] if len(inputs) == 1 else inputs)
        finally:
            layer.return_state = wanted
        leaves = state if isinstance(state, tuple) else (state,)
        for leaf, final in zip(inputs, leaves):
            finals[leaf.name] = final
        return (out, state) if wanted else out

    def _declare(self, layer, x: Node) -> tuple[Node, ...]:
        g = x.graph
        stacked = layer.num_layers * layer.directions
        shape = (x.shape[0], layer.units) if stacked == 1 else (stacked, x.shape[0], layer.units)
        dtype = layer.weights[(0, 0)]["w_ih"].dtype
        nodes = []
        for leaf in layer.cell.states:
            node = g.input(f"{STATE}{layer.scope}/{leaf}", shape, dtype)
            self.leaves.append(StateLeaf(node.name, node))
            nodes.append(node)
        self._inputs[id(layer)] = tuple(nodes)
        return tuple(nodes)
