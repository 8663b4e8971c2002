"""The full drawing: one node per value (scalar constants folded into their consumers), name scopes
as clusters, fused kernels as clusters inside their layer's, loop bodies drawn once as clusters
with a back edge marked with the trip count, and optionally each parameter's optimizer work
folded into one update box.
"""

import numpy as np

from graphc.ir import dtypes
from graphc.ir.text import attr_text, value_name
from graphc.viz import style
from graphc.viz.emit import Picture
from graphc.viz.style import STYLE, UPDATE_RESULT


def scalar_const(n) -> str | None:
    """A scalar constant as the drawing writes it inline (2.0, 0.5, 3), else None."""
    if not n.is_const or np.ndim(n.attrs["value"]) != 0:
        return None
    x = n.attrs["value"].item()
    if not dtypes.is_float(n.dtype):
        return repr(x)
    text = f"{float(x):.4g}"
    return text if any(c in text for c in ".eni") else text + ".0"  # 2 -> 2.0, keep nan/inf


def body_of(n):
    """The sub-graph attribute of a loop node (a scan), or None."""
    for v in n.attrs.values():
        if hasattr(v, "content_key"):
            return v
    return None


class FullDrawing:
    """Builds the Picture of `nodes` (see module doc); `an` is their graphc.viz.analysis.Analysis."""

    def __init__(
        self, graph, nodes, an, pic: Picture, kernels=None, fold_scalars=True, fold_updates=True, parts: bool = False
    ):
        self.graph, self.nodes, self.an, self.pic = graph, nodes, an, pic
        self.parts = parts
        self.ids = {n.id for n in nodes}
        consumers: dict[int, int] = {}
        for n in nodes:
            for x in n.inputs:
                consumers[x.id] = consumers.get(x.id, 0) + 1
        self.folded = {
            n.id: s for n in nodes if fold_scalars and (s := scalar_const(n)) is not None and n.id in consumers
        }
        self.box: dict[int, str] = {}  # node id -> the update box standing for it
        if fold_updates:
            self._fold_updates()
        self.kernel_of: dict[int, int] = {}
        self.kernels = []
        for k in kernels or []:
            inside = [i for i in k.node_ids if i in self.ids and i not in self.kernel_of and i not in self.box]
            for i in inside:
                self.kernel_of[i] = len(self.kernels)
            self.kernels.append((k, inside))
        self.roles_drawn: set[str] = set()
        self.loops = 0
        if parts:  # declared in this order, dot tends to keep them left to right
            for part in ("forward", "backward", "update"):
                pic.cluster((part,), **style.PART_CLUSTER[part])

    # -- names and clusters ----------------------------------------------------------------
    def name(self, n, prefix="") -> str:
        return self.box.get(n.id) if not prefix and n.id in self.box else f"{prefix}n{n.id}"

    def _part(self, n) -> tuple:
        return (self.an.part(n),) if self.parts else ()

    def _scope_path(self, base: tuple, scope: str) -> tuple:
        key = base
        for part in scope.split("/") if scope else []:
            key = self.pic.cluster((*key, "scope:" + part), label=part, **style.SCOPE_CLUSTER)
        return key

    def cluster_of(self, n) -> tuple:
        base = self._part(n)
        if base:
            self.pic.cluster(base, **style.PART_CLUSTER[base[0]])
        if n.id in self.kernel_of:
            return self._kernel_cluster(self.kernel_of[n.id])
        return self._scope_path(base, n.scope)

    def _kernel_cluster(self, ki: int) -> tuple:
        k, inside = self.kernels[ki]
        members = [self.graph.nodes[i] for i in inside]
        base = self._part(members[0])
        if base:
            self.pic.cluster(base, **style.PART_CLUSTER[base[0]])
        scopes = [m.scope.split("/") if m.scope else [] for m in members]
        common = []
        for parts in zip(*scopes):
            if len(set(parts)) != 1:
                break
            common.append(parts[0])
        layers = sorted({m.scope for m in members if m.scope})
        ops = ", ".join(dict.fromkeys(m.op for m in members))
        where = "" if len(layers) <= 1 and "/".join(common) in layers + [""] else f"\\n(layers {', '.join(layers)})"
        label = f"kernel {k.name}: {ops}{where}"
        return self.pic.cluster(
            (*self._scope_path(base, "/".join(common)), f"kernel:{ki}"), label=label, **style.KERNEL_CLUSTER
        )

    # -- the update boxes ------------------------------------------------------------------
    def _fold_updates(self) -> None:
        an, g = self.an, self.graph
        owned: dict[str | None, list[int]] = {}
        for i, owner in an.owner.items():
            if i in self.ids:
                owned.setdefault(owner, []).append(i)
        for owner, members in owned.items():
            name = "upd_shared" if owner is None else f"n{g.updates[owner].id}"
            for i in members:
                self.box[i] = name
            self.box_members = getattr(self, "box_members", {})
            self.box_members[name] = (owner, members)

    def _emit_boxes(self) -> None:
        g = self.graph
        for name, (owner, members) in getattr(self, "box_members", {}).items():
            nodes = [g.nodes[i] for i in members]
            state = [n.name for n in nodes if n.is_param]
            ops = len([n for n in nodes if not n.is_source])
            scopes = sorted({n.scope for n in nodes if n.scope and not n.is_param})
            by = f"{', '.join(scopes)}: " if scopes else ""
            if owner is None:
                label = f"optimizer, shared\\n{by}{ops} ops"
            else:
                p = g.params[owner]
                label = f"update {owner}\\n⇒ {owner} {p.type_str}\\n{by}{ops} ops folded"
            if state:
                label += "\\nstate: " + ", ".join(
                    s.rsplit("/", 1)[-1] if owner is None else short_state_name(s, owner) for s in state
                )
            ran_in = [str(k.name) for k, _ in self.kernels if set(members) & set(k.node_ids)]
            if ran_in:  # the kernels this folded work runs in (their clusters would be empty)
                more = f" … ({len(ran_in) - 2} more)" if len(ran_in) > 2 else ""
                label += "\\nkernels: " + ",\\n".join(ran_in[:2]) + more  # one a line: the names are long
            cluster = self._part(nodes[0])
            if cluster:
                self.pic.cluster(cluster, **style.PART_CLUSTER[cluster[0]])
            attrs = {**STYLE["update"], **(UPDATE_RESULT if owner is not None else {})}
            self.pic.node(name, cluster, label=label, tooltip=f"{ops} optimizer ops folded", **attrs)
            self.roles_drawn.add("update")

    # -- nodes -----------------------------------------------------------------------------
    def draw(self) -> None:
        g, an = self.graph, self.an
        outputs: dict[int, list[str]] = {}
        for k, v in g.outputs.items():
            outputs.setdefault(v.id, []).append(k)
        updates: dict[int, list[str]] = {}
        for k, v in g.updates.items():
            updates.setdefault(v.id, []).append(k)
        grad_of_param = {i: p for p, ids in an.gradients.items() for i in ids}
        by_label = {n.label: value_name(n) for n in self.nodes}
        self._emit_boxes()
        for n in self.nodes:
            if n.id in self.folded or n.id in self.box:
                continue
            if body_of(n) is not None:
                self._draw_loop(n, "", self.cluster_of(n), an.role[n.id])
                continue
            role = an.role[n.id]
            label, attrs = style.marked(
                role,
                self._label(n),
                grad_of_param.get(n.id),
                outputs.get(n.id, ()),
                updates.get(n.id, ()),
                n.id in an.saved,
            )
            tip = [f"{n.op}: {n.type_str}"]
            if n.scope:
                tip.append(f"scope {n.scope}")
            if n.location:
                tip.append(f"declared at {n.location}")
            if n.is_backward and n.grad_of:
                tip.append(f"backward of {by_label.get(n.grad_of, n.grad_of)}")
            elif role == "update":
                tip.append("update")
            self.roles_drawn.add(role)
            self.pic.node(self.name(n), self.cluster_of(n), label=label, tooltip="; ".join(tip), **attrs)
        self._edges(self.nodes, "")
        for var, v in g.updates.items():
            p = g.params[var]
            if v.id in self.ids and p.id in self.ids:
                self.pic.edge(self.name(v), self.name(p), "update", label="update")
        for p, ids in an.gradients.items():
            node = g.params[p]
            for i in ids:
                if node.id in self.ids and i in self.ids and i not in self.box:
                    self.pic.edge(self.name(node), self.name(g.nodes[i]), "pair")

    def _label(self, n) -> str:
        name = value_name(n)
        if n.is_input or n.is_param:
            return f"{name}\\n{n.type_str}"
        if n.is_const:
            return f"{name} const\\n{n.type_str}"
        head = f"{name} = {n.op}"
        if any(x.id in self.folded for x in n.inputs):
            head += "(" + ", ".join(self.folded.get(x.id, "·") for x in n.inputs) + ")"
        lines = [head]
        attrs = [f"{k}={attr_text(v)}" for k, v in n.attrs.items() if not hasattr(v, "content_key")]
        if attrs:
            lines.append(", ".join(attrs))
        if not n.inputs or all(x.id in self.folded for x in n.inputs) or not self.pic.shapes:
            lines.append(n.type_str)  # no incoming edge shows the type
        return "\\n".join(lines)

    # -- edges -----------------------------------------------------------------------------
    def _edge_kind(self, x, n) -> str:
        t = self.an.tainted
        if x.id in t and n.id in t and n.id not in self.an.owner:
            return "grad"
        if x.id not in t and n.id in t and self.parts:
            return "saved" if x.id in self.an.saved and n.id not in self.an.owner else "read"
        if x.id in self.an.saved and n.id in t:
            return "saved"
        return "data"

    def _edges(self, nodes, prefix: str) -> None:
        for n in nodes:
            if n.id in self.folded and not prefix:
                continue
            if body_of(n) is not None:
                continue  # its inputs are wired to the body's inputs (_draw_loop)
            for x in n.inputs:
                if not prefix and (x.id in self.folded or x.id not in self.ids):
                    continue
                src = self.source_name(x, n, prefix)
                kind = self._edge_kind(x, n) if not prefix else "data"
                label = x.type_str if not x.is_tuple else None
                if kind == "read":
                    label = None
                self.pic.edge(src, self.name(n, prefix), kind, label=label)

    def source_name(self, x, reader, prefix: str) -> str:
        """The drawn node standing for value x as `reader` reads it (a loop's outputs come from its body)."""
        body = body_of(x)
        if body is None:
            return self.name(x, prefix)
        inner = f"{prefix}s{x.id}_"
        index = reader.attrs.get("index", 0) if reader.opdef.takes_tuple else 0
        nc = x.attrs.get("num_carry", 0)
        outs = body.outputs
        if index < len(outs):
            return f"{inner}n{outs[index].id}"
        carry_ins = body.inputs[:nc]
        k = index - len(outs)
        return f"{inner}n{carry_ins[k].id}" if k < len(carry_ins) else f"{inner}n{outs[0].id}"

    # -- loops -----------------------------------------------------------------------------
    def _draw_loop(self, n, prefix: str, cluster: tuple, role: str) -> None:
        body = body_of(n)
        inner = f"{prefix}s{n.id}_"
        length = n.attrs.get("length", "?")
        reverse = bool(n.attrs.get("reverse", False))
        nc, nx = n.attrs.get("num_carry", 0), n.attrs.get("num_xs", 0)
        head = "reverse scan" if reverse else "scan"
        label = f"{value_name(n) if not prefix else n.label} = {head} ×{length}"
        label += "  (t = T-1 … 0)" if reverse else "  (t = 0 … T-1)"
        key = self.pic.cluster((*cluster, f"loop:{inner}"), label=label + "\\nbody drawn once", **style.LOOP_CLUSTER)
        self.loops += 1
        op_role = "backward" if role in ("backward", "gradient") else "update" if role == "update" else "forward"
        kinds = ["carry"] * nc + ["x_t"] * nx
        for i, b in enumerate(body.all_inputs):
            what = kinds[i] if i < len(kinds) else "captured"
            self.pic.node(
                f"{inner}n{b.id}", key, label=f"{what} {b.name}\\n{b.type_str}", **{**STYLE["input"], "fontsize": "9"}
            )
        for b in body.nodes:
            if b.is_input:
                continue
            if body_of(b) is not None:
                self._draw_loop(b, inner, key, op_role)
                continue
            text = scalar_const(b)
            label = f"{text} const" if text is not None else f"{b.op}\\n{b.type_str}"
            self.pic.node(f"{inner}n{b.id}", key, label=label, **STYLE[op_role if not b.is_const else "const"])
        self.roles_drawn.add(op_role)
        self._edges([b for b in body.nodes if not b.is_input], inner)
        for outer, b in zip(n.inputs, body.all_inputs):
            if prefix or outer.id in self.ids and outer.id not in self.folded:
                src = self.source_name(outer, n, prefix)
                self.pic.edge(src, f"{inner}n{b.id}", "data", label=outer.type_str if not outer.is_tuple else None)
        for i in range(nc):
            self.pic.edge(
                f"{inner}n{body.outputs[i].id}", f"{inner}n{body.inputs[i].id}", "loop", label=f"next step ×{length}"
            )


def short_state_name(state: str, owner: str) -> str:
    """adam/m/dense/w -> m (the state variable's name without the parameter's)."""
    head = state[: -len(owner) - 1] if state.endswith("/" + owner) else state
    return head.rsplit("/", 1)[-1]
