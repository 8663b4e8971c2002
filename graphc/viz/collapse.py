"""The collapsed drawing: one box per layer (name scope) for its forward work and one for its
backward work, one update box per parameter, and the graph's inputs; `expand` draws one layer's
nodes in full.

A layer is a node's scope cut one level below the scope every scoped forward op shares (the
model's own name): `cnn/conv2d`, `cnn/dense_1`. Unscoped forward ops are grouped by the named
output they compute (`train/loss`); backward nodes go with their forward node's layer (they
carry its scope, or `grad_of` names it). Runs of identical layers (same ops and parameter
shapes, a deep MLP's hidden layers) can be folded into one box (fold_runs).
"""

from graphc.ir.text import value_name
from graphc.viz.emit import Picture
from graphc.viz.full import body_of, short_state_name
from graphc.viz.style import PART_CLUSTER, SAVED, SCOPE_CLUSTER, STYLE, UPDATE_RESULT, marked

SHARED = "(shared)"


def layer_depth(nodes, an) -> int:
    """How many scope components name a layer (one below the prefix every scoped forward op shares)."""
    scopes = [n.scope.split("/") for n in nodes if n.scope and not n.is_source and an.part(n) == "forward"]
    if not scopes:
        return 1
    common = 0
    for parts in zip(*scopes):
        if len(set(parts)) != 1:
            break
        common += 1
    if all(len(s) == common for s in scopes):  # every op in one scope: that scope is the layer
        return max(common, 1)
    return common + 1


def _cut(scope: str, depth: int) -> str | None:
    return "/".join(scope.split("/")[:depth]) if scope else None


class Grouping:
    """Which box each node belongs to: group[node id] = (layer key, part) or None (drawn alone),
    hidden = ids not drawn (constants), order = layer keys in forward order."""

    def __init__(
        self, graph, nodes, an, expand: str | None = None, fold_runs: bool = False, fold_all_updates: bool = False
    ):
        self.graph, self.nodes, self.an = graph, nodes, an
        depth = layer_depth(nodes, an)
        self.group: dict[int, tuple | None] = {}
        self.hidden: set[int] = set()
        labels = {n.label: n for n in nodes}
        ids = {n.id for n in nodes}
        # Unscoped forward ops: by the first named output they compute through unscoped ops.
        by_output: dict[int, str] = {}
        for name, v in graph.outputs.items():
            stack = [v] if v.id in ids else []
            while stack:
                n = stack.pop()
                if n.id in by_output or n.scope or n.is_source or an.part(n) != "forward":
                    continue
                by_output[n.id] = name
                stack.extend(n.inputs)
        for n in nodes:
            part = an.part(n)
            if n.is_const:
                self.hidden.add(n.id)
                key = None
            elif part == "update":
                owner = an.owner.get(n.id, an.state_of.get(n.name) if n.is_param else None)
                key = ("update:" + (owner if owner is not None else SHARED), "update")
            elif n.is_input:
                key = None
            elif part == "forward":
                layer = _cut(n.scope, depth) if n.scope else by_output.get(n.id)
                key = (layer, "forward") if layer is not None else None
            else:
                layer = _cut(n.scope, depth) if n.scope else None
                if layer is None and n.grad_of in labels:
                    f = self.group.get(labels[n.grad_of].id)
                    layer = f[0] if f else None
                key = (layer, "backward") if layer is not None else None
            self.group[n.id] = key
        self.layers = list(dict.fromkeys(k[0] for k in self.group.values() if k and k[1] == "forward"))
        self.expand = None
        if expand is not None:
            self.expand = resolve_layer(expand, self.layers)
            for i, key in self.group.items():
                if key and key[0] == self.expand:
                    self.group[i] = None
        self.merged: dict[str, tuple[str, int]] = {}  # layer -> (merged key, layers in it)
        if fold_runs:
            self._fold_runs()
        self.fold_all = fold_all_updates
        if fold_all_updates:
            for i, key in self.group.items():
                if key and key[1] == "update":
                    self.group[i] = ("update:" + SHARED, "update")

    def _signature(self, layer):
        ops = tuple(self.graph.nodes[i].op for i, k in self.group.items() if k and k[0] == layer)
        params = tuple(n.type_str for n in self.nodes if n.is_param and self.group.get(n.id) == (layer, "forward"))
        return ops, params

    def _fold_runs(self) -> None:
        layers = [x for x in self.layers if x != self.expand]
        sig = {x: self._signature(x) for x in layers}
        runs, run = [], [layers[0]] if layers else []
        for x in layers[1:]:
            if sig[x] == sig[run[-1]]:
                run.append(x)
            else:
                runs.append(run)
                run = [x]
        if run:
            runs.append(run)
        for run in runs:
            if len(run) < 4:
                continue
            middle = run[1:-1]
            key = f"{middle[0]} … {middle[-1]}"
            for x in middle:
                self.merged[x] = (key, len(middle))
        if not self.merged:
            return
        owner_layer = {}
        for n in self.nodes:
            if n.is_param and n.attrs["trainable"] and self.group.get(n.id) and self.group[n.id][0] in self.merged:
                owner_layer[n.name] = self.merged[self.group[n.id][0]][0]
        for i, key in list(self.group.items()):
            if not key:
                continue
            if key[0] in self.merged:
                self.group[i] = (self.merged[key[0]][0], key[1])
            elif key[1] == "update" and key[0][len("update:") :] in owner_layer:
                self.group[i] = ("update:" + owner_layer[key[0][len("update:") :]], "update")
        self.layers = list(dict.fromkeys(self.merged.get(x, (x,))[0] for x in self.layers))


def resolve_layer(name, layers) -> str:
    """The layer `name` names: its full scope or a unique last part (conv2d_1)."""
    from graphc.errors import AttributeValueError

    if not isinstance(name, str):
        raise AttributeValueError(f"render: expand must be a layer name (str), got {name!r}")
    if name in layers:
        return name
    hits = [x for x in layers if x.endswith("/" + name)]
    if len(hits) == 1:
        return hits[0]
    raise AttributeValueError(
        f"render: expand={name!r} is not a layer of this drawing; expected one of {', '.join(map(repr, layers))}"
    )


def collapsed_picture(graph, nodes, an, pic: Picture, grouping: Grouping, mirror: bool, kernels=None) -> set[str]:
    """Fill `pic` with the collapsed drawing; return the roles drawn (for the legend). A box lists
    the fused kernels (`kernels`) its nodes run in."""
    g = graph
    roles: set[str] = set()
    members: dict[tuple, list] = {}
    for n in nodes:
        key = grouping.group.get(n.id)
        if key is not None:
            members.setdefault(key, []).append(n)
    names: dict[tuple, str] = {key: f"box{i}" for i, key in enumerate(members)}
    outputs: dict[int, list[str]] = {}
    for k, v in g.outputs.items():
        outputs.setdefault(v.id, []).append(k)
    grad_param = {i: p for p, ids in an.gradients.items() for i in ids}
    kernel_of = {i: (ki, str(k.name)) for ki, k in enumerate(kernels or []) for i in k.node_ids}

    def part_cluster(part):
        if not mirror:
            return ()
        return pic.cluster((part,), **PART_CLUSTER[part])

    if mirror:  # declared in this order, dot keeps them left to right: forward, backward, updates
        for part in ("forward", "backward", "update"):
            part_cluster(part)

    for key, ms in members.items():
        layer, part = key
        label, role, extra = _box_label(g, key, ms, an, grouping, outputs, grad_param)
        names_k = [name for _, name in sorted({kernel_of[m.id] for m in ms if m.id in kernel_of})]
        if names_k:
            more = f" … ({len(names_k) - 2} more)" if len(names_k) > 2 else ""
            label += "\\nkernels: " + ",\\n".join(names_k[:2]) + more  # one a line: the names are long
        roles.add(role)
        pic.node(names[key], part_cluster(part), label=label, **{**STYLE[role], **extra})
        if any(m.id in an.saved for m in ms):
            roles.add("saved")
    # Nodes drawn alone: inputs, unscoped ops, the expanded layer's nodes.
    alone = [n for n in nodes if grouping.group.get(n.id) is None and n.id not in grouping.hidden]
    for n in alone:
        role = an.role[n.id]
        roles.add(role)
        part = an.part(n)
        cluster = part_cluster(part) if not n.is_input else part_cluster("forward")
        if grouping.expand is not None and n.scope and n.scope.startswith(grouping.expand):
            cluster = pic.cluster(
                (*cluster, "expanded:" + part), label=f"{grouping.expand} ({part}, expanded)", **SCOPE_CLUSTER
            )
        label = f"{value_name(n)}\\n{n.type_str}" if n.is_source else f"{value_name(n)} = {n.op}\\n{n.type_str}"
        label, attrs = marked(role, label, grad_param.get(n.id), outputs.get(n.id, ()), saved=n.id in an.saved)
        pic.node(f"n{n.id}", cluster, label=label, **attrs)

    def item(n):
        key = grouping.group.get(n.id)
        if key is not None:
            return names[key]
        return None if n.id in grouping.hidden else f"n{n.id}"

    flows: dict[tuple[str, str], dict] = {}
    for n in nodes:
        dst = item(n)
        if dst is None:
            continue
        for x in n.inputs:
            src = item(x)
            if src is None or src == dst:
                continue
            px, pn = an.part(x), an.part(n)
            if px == "forward" and pn == "forward":
                kind = "data"
            elif px == "backward" and pn == "backward":
                kind = "grad"
            elif px == "forward" and pn == "backward":
                if x.id not in an.saved:
                    continue
                kind = "saved"
            elif px == "backward" and pn == "update":
                kind = "gradin"
            elif px == "update" and pn == "update":
                kind = "read"
            else:
                continue
            f = flows.setdefault((src, dst), {"kind": kind, "types": []})
            if x.is_tuple:
                continue
            if x.type_str not in f["types"]:
                f["types"].append(x.type_str)
    for (src, dst), f in flows.items():
        kind = f["kind"]
        label = None
        if kind in ("data", "grad") and f["types"]:
            label = "\\n".join(f["types"][:2]) + ("\\n…" if len(f["types"]) > 2 else "")
        if kind == "gradin":
            pic.edge(src, dst, "data", color="#c0392b")
        elif kind == "read":
            continue  # shared optimizer work (a step counter) feeds every update box: its label says so
        else:
            pic.edge(src, dst, kind, label=label)
    # Same rank: a layer's forward box, its backward box and its parameters' update boxes.
    if mirror:
        owner_rank: dict[str, list[str]] = {}
        for p in an.gradients:
            pnode = g.params[p]
            layer = grouping.group.get(pnode.id)
            upd = ("update:" + p, "update")
            if layer and upd in names:
                owner_rank.setdefault(layer[0], []).append(names[upd])
        for layer in grouping.layers:
            row = [names[k] for k in ((layer, "forward"), (layer, "backward")) if k in names]
            row += owner_rank.get(layer, [])
            pic.same_rank(row)
            for a, b in zip(row, row[1:]):  # left to right: forward, backward, updates
                pic.edges.append((a, b, "order", {"style": "invis"}))
    return roles


def _ops_text(ms) -> str:
    counts: dict[str, int] = {}
    for m in ms:
        if not m.is_source:
            op = m.op
            if body_of(m) is not None and "length" in m.attrs:  # a loop: its trip count and direction
                op = f"{'reverse ' * bool(m.attrs.get('reverse'))}{m.op} ×{m.attrs['length']}"
            counts[op] = counts.get(op, 0) + 1
    items = [f"{op}×{c}" if c > 1 else op for op, c in counts.items()]
    lines, line = [], ""
    for it in items[:9]:
        if line and len(line) + len(it) > 34:
            lines.append(line)
            line = ""
        line = f"{line}, {it}" if line else it
    if len(items) > 9:
        line += f", … ({len(items) - 9} more)"
    if line:
        lines.append(line)
    return "\\n".join(lines)


def _box_label(g, key, ms, an, grouping, outputs, grad_param):
    layer, part = key
    extra: dict[str, str] = {}
    count = next((c for k, c in grouping.merged.values() if k == layer), 0)
    fold = f"  ({count} layers alike, folded)" if count else ""
    if part == "update":
        owner = layer[len("update:") :]
        state = [short_state_name(m.name, an.state_of.get(m.name) or owner) for m in ms if m.is_param]
        ops = len([m for m in ms if not m.is_source])
        scopes = sorted({m.scope for m in ms if m.scope and not m.is_param})
        by = f"{', '.join(scopes)}: " if scopes else ""
        if owner == SHARED:
            lines = ["optimizer updates, all folded" if grouping.fold_all else "optimizer, shared"]
        elif owner in g.params:
            lines = [f"update {owner} {g.params[owner].type_str}"]
            extra.update(UPDATE_RESULT)
        else:  # the updates of a run of alike layers
            owned = {an.owner[m.id] for m in ms if an.owner.get(m.id) is not None}
            lines = [f"update {len(owned)} params of {owner}"]
            extra.update(UPDATE_RESULT)
        lines.append(f"{by}{ops} ops folded")
        if state:
            lines.append("state: " + ", ".join(dict.fromkeys(state)))
        return "\\n".join(lines), "update", extra
    params = [m for m in ms if m.is_param]
    ops = _ops_text(ms)
    if part == "forward":
        role = "loss" if any(m.id in an.loss for m in ms) else "forward"
        lines = [f"{layer}{fold}", ops]
        trainable = [p for p in params if p.attrs["trainable"]]
        state = [p for p in params if not p.attrs["trainable"]]
        if trainable:
            each = list(dict.fromkeys(f"{p.name.rsplit('/', 1)[-1]} {p.type_str}" for p in trainable))
            head = "params per layer: " if count else "params: "
            lines.append(head + ", ".join(each[:3]) + (" …" if len(each) > 3 else ""))
        if state:
            lines.append("state: " + ", ".join(p.name.rsplit("/", 1)[-1] for p in state[:4]))
        saved = [m for m in ms if m.id in an.saved]
        if saved:
            lines.append(f"saves {len(saved)} value{'s' * (len(saved) > 1)} for backward")
            extra.update(SAVED)
        outs = [k for m in ms for k in outputs.get(m.id, [])]
        if outs:
            lines.append("→ " + ", ".join(outs))
            extra.update({"penwidth": "2"})
        return "\\n".join(lines), role, extra
    lines = [f"∇ {layer}{fold}", ops]
    order = {name: i for i, name in enumerate(g.params)}
    grads = sorted(((grad_param[m.id], m) for m in ms if m.id in grad_param), key=lambda pm: order[pm[0]])
    if grads:
        each = list(dict.fromkeys(f"∇{p.rsplit('/', 1)[-1]} {m.type_str}" for p, m in grads))
        head = "gradients per layer: " if count else "gradients: "
        lines.append(head + ", ".join(each[:3]) + (" …" if len(each) > 3 else ""))
        extra.update({"penwidth": "2"})
    reads = {x.id for m in ms for x in m.inputs if x.id in an.saved}
    if reads:
        lines.append(f"reads {len(reads)} saved value{'s' * (len(reads) > 1)}")
    return "\\n".join(lines), "backward", extra
