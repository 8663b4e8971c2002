"""DOT emission: a Picture collects nodes (each in at most one, possibly nested, cluster), typed
edges and same-rank groups, then writes them as one graphviz.Digraph.

In a mirrored picture (the training step), gradient edges are written from consumer to
producer with `dir=back`: the arrow still points the way the gradient flows, but dot ranks a
layer's backward work level with its forward work, so the backward pass climbs back up beside
the forward pass instead of continuing below it.
"""

import graphviz

from graphc.viz.style import EDGE, REVERSED


class Picture:
    """Nodes, clusters and edges of one drawing, in the order they were added."""

    def __init__(self, name: str, title: str, mirror: bool = False, shapes: bool = True):
        self.name, self.title, self.mirror, self.shapes = name, title, mirror, shapes
        self.nodes: dict[str, dict] = {}
        self.where: dict[str, tuple] = {}  # node name -> cluster key (a tuple path)
        self.clusters: dict[tuple, dict] = {}  # key -> attributes (label, style)
        self.edges: list[tuple[str, str, dict]] = []
        self.ranks: list[list[str]] = []
        self._seen: set[tuple] = set()

    def cluster(self, key: tuple, **attrs) -> tuple:
        """Declare the cluster `key` (its parent is key[:-1]; parents must exist or be declared)."""
        self.clusters.setdefault(key, {}).update(attrs)
        return key

    def node(self, name: str, cluster: tuple = (), **attrs) -> str:
        self.nodes[name] = attrs
        self.where[name] = cluster
        return name

    def edge(self, tail: str, head: str, kind: str = "data", label: str | None = None, **attrs) -> None:
        if tail not in self.nodes or head not in self.nodes or tail == head:
            return
        if (tail, head, kind) in self._seen:  # one edge per pair: a folded box reads a value once
            return
        self._seen.add((tail, head, kind))
        e = {**EDGE[kind], **attrs}
        if label and (self.shapes or kind in ("loop", "update")):
            e["label"] = label
        self.edges.append((tail, head, kind, e))

    def same_rank(self, names) -> None:
        names = [n for n in names if n in self.nodes]
        if len(names) > 1:
            self.ranks.append(names)

    def digraph(self) -> graphviz.Digraph:
        dot = graphviz.Digraph(
            self.name,
            graph_attr={
                "rankdir": "TB",
                "newrank": "true",  # newrank: same-rank groups across clusters (dot 2.43 needs it)
                "fontname": "Helvetica",
                "labelloc": "t",
                "fontsize": "16",
                "label": self.title,
                "nodesep": "0.3",
                "ranksep": "0.35",
            },
            node_attr={"fontname": "Helvetica", "fontsize": "11"},
            edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#555555"},
        )
        children: dict[tuple, list[tuple]] = {}
        for key in sorted(self.clusters, key=len):
            children.setdefault(key[:-1], []).append(key)
        members: dict[tuple, list[str]] = {}
        for name, key in self.where.items():
            members.setdefault(key if key in self.clusters else (), []).append(name)
        index = {key: i for i, key in enumerate(self.clusters)}
        filled = {key[:i] for key in members for i in range(1, len(key) + 1)}  # clusters holding a node

        def emit(g, key):
            for name in members.get(key, []):
                g.node(name, **self.nodes[name])
            for child in children.get(key, []):
                if child not in filled:
                    continue
                with g.subgraph(name=f"cluster_{_slug(child[-1])}_{index[child]}") as c:
                    c.attr(**self.clusters[child])
                    emit(c, child)

        emit(dot, ())
        for tail, head, kind, e in self.edges:
            if kind in REVERSED or (self.mirror and kind == "grad"):
                dot.edge(head, tail, dir="back", **e)
            else:
                dot.edge(tail, head, **e)
        for names in self.ranks:
            with dot.subgraph() as s:
                s.attr(rank="same")
                for n in names:
                    s.node(n)
        return dot


def _slug(text) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(text))[:40]
