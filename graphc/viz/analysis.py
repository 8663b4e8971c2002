"""What each node of a drawing is: its role, the loss, each parameter's gradient, the update
region of each parameter, and the forward values the backward pass keeps alive (saved).

Everything here reads the phase tags and the graph's updates, never op names: a backward node is
Phase.BACKWARD; update work is Phase.UPDATE, or forward-tagged nodes computed from backward ones
that lead to a variable's update (a hand-written `w - 0.1 * gw`).
"""

from dataclasses import dataclass, field

from graphc.ir.phase import Phase

# Roles a drawing colours by, in the order the legend lists them.
ROLES = ("input", "param", "state", "const", "forward", "loss", "backward", "gradient", "update")


def tainted(nodes) -> set[int]:
    """ids of backward and update nodes (their phase tag) and of everything computed from them."""
    out: set[int] = set()
    for n in nodes:
        if n.phase is not Phase.FORWARD or any(x.id in out for x in n.inputs):
            out.add(n.id)
    return out


@dataclass
class Analysis:
    """The roles of the nodes drawn (see ROLES) and what ties them together.

    role: node id -> role; saved: ids of forward values a backward node reads the value of;
    gradients: parameter name -> ids of its gradient nodes; owner: id of a node of an update
    region -> the parameter whose update it computes (None: shared by several, e.g. a step
    counter); state_of: optimizer state variable -> the parameter it belongs to (None: shared).
    """

    role: dict[int, str] = field(default_factory=dict)
    tainted: set[int] = field(default_factory=set)
    saved: set[int] = field(default_factory=set)
    loss: set[int] = field(default_factory=set)
    gradients: dict[str, list[int]] = field(default_factory=dict)
    owner: dict[int, str | None] = field(default_factory=dict)
    state_of: dict[str, str | None] = field(default_factory=dict)

    def part(self, n) -> str:
        """'forward', 'backward' or 'update': the part of the training step a node is drawn in."""
        if n.id in self.owner or (n.is_param and n.name in self.state_of):
            return "update"
        if n.id in self.tainted:
            return "backward"
        return "forward"


def analyse(graph, nodes) -> Analysis:
    """The Analysis of `nodes` (a topologically ordered selection of `graph`'s nodes)."""
    a = Analysis(tainted=tainted(nodes))
    ids = {n.id for n in nodes}
    by_id = {n.id: n for n in nodes}
    consumers: dict[int, list] = {}
    for n in nodes:
        for x in n.inputs:
            consumers.setdefault(x.id, []).append(n)
    _update_regions(graph, nodes, by_id, consumers, a)
    a.saved = {
        x.id
        for n in nodes
        if n.id in a.tainted and n.id not in a.owner and n.opdef.reads_values
        for x in n.inputs
        if x.id not in a.tainted and not x.is_source
    }
    # The loss: a named output called loss, or what the seed of a backward pass differentiates.
    labels = {n.label: n for n in nodes}
    for name, v in graph.outputs.items():
        if (name == "loss" or name.endswith("/loss")) and v.id in ids and v.id not in a.tainted and not v.is_tuple:
            a.loss.add(v.id)
    for n in nodes:
        if n.is_backward and n.grad_of in labels and all(x.is_const for x in n.inputs):
            f = labels[n.grad_of]
            if f.id not in a.tainted and not f.is_source and not f.is_tuple and f.shape == ():
                a.loss.add(f.id)
    outputs = {v.id for v in graph.outputs.values()}
    _output_gradients(graph, nodes, labels, a)
    grads = {i for ids_ in a.gradients.values() for i in ids_}
    for n in nodes:
        role = n.role
        if n.id in a.owner:
            role = "update"
        elif n.is_param and not n.attrs["trainable"]:
            role = "state"
        elif n.id in a.loss:
            role = "loss"
        elif n.id in grads or (n.id in outputs and n.id in a.tainted and not n.is_source):
            role = "gradient"
        elif n.id in a.tainted and role == "forward":
            role = "backward"  # computed from gradients, but no variable's update
        a.role[n.id] = role
    return a


def _output_gradients(graph, nodes, labels, a: Analysis) -> None:
    """Gradients named as outputs (gc.grad's results, no optimizer): a backward output is the
    gradient of parameter p when it differentiates p itself (the sum of p's contributions) or an
    op reading p, and has p's type."""
    ids = {n.id for n in nodes}
    for v in graph.outputs.values():
        if v.id not in ids or not v.is_backward or v.is_tuple or v.grad_of not in labels:
            continue
        f = labels[v.grad_of]
        for p in [f] if f.is_param else [x for x in f.inputs if x.is_param]:
            if p.attrs["trainable"] and p.name not in a.gradients and (p.shape, p.dtype) == (v.shape, v.dtype):
                a.gradients[p.name] = [v.id]
                break


def _update_regions(graph, nodes, by_id, consumers, a: Analysis) -> None:
    """Fill a.owner, a.state_of and a.gradients from the graph's updates of trainable parameters."""
    # The update region: update work (not backward) and the state variables only it reads.
    region = {n.id for n in nodes if n.id in a.tainted and n.phase is not Phase.BACKWARD}
    for n in nodes:
        if n.is_param and not n.attrs["trainable"]:
            readers = consumers.get(n.id, [])
            if readers and all(r.id in region for r in readers):
                region.add(n.id)
    owners: dict[int, set[str]] = {}
    for name, u in graph.updates.items():
        p = graph.params.get(name)
        if p is None or not p.attrs["trainable"] or u.id not in region:
            continue
        stack, seen = [u], set()
        while stack:
            n = stack.pop()
            if n.id in seen or n.id not in region:
                continue
            seen.add(n.id)
            owners.setdefault(n.id, set()).add(name)
            stack.extend(n.inputs)
            if n.is_param and n.name in graph.updates:  # a state variable: its own update belongs here too
                stack.append(graph.updates[n.name])
    for i, names in owners.items():
        a.owner[i] = next(iter(names)) if len(names) == 1 else None
        n = by_id[i]
        if n.is_param:
            a.state_of[n.name] = a.owner[i]
    for name in graph.updates:  # a state variable's update (a step counter's) with no parameter reading it
        u = graph.updates[name]
        p = graph.params.get(name)
        if p is not None and not p.attrs["trainable"] and u.id in region and u.id not in a.owner and p.id in region:
            a.owner[u.id] = a.owner.setdefault(p.id, None)
            a.state_of.setdefault(name, None)
    for name, u in graph.updates.items():
        p = graph.params.get(name)
        if p is None or not p.attrs["trainable"] or u.id not in a.owner:
            continue
        private = [i for i, o in a.owner.items() if o == name]
        read = [x for i in private for x in by_id[i].inputs if x.id in a.tainted and x.id not in a.owner]
        same = [x for x in read if not x.is_tuple and x.shape == p.shape]
        chosen = same or read
        if chosen:
            a.gradients[name] = list(dict.fromkeys(x.id for x in chosen))
