"""Reading the DOT text graphc writes (one statement a line, as the graphviz package emits it):
nodes with their attributes and cluster, edges, clusters; and, with `dot` installed, where dot
puts every edge label (`dot -Tjson`) to check that no two overlap."""

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field

HAVE_DOT = shutil.which("dot") is not None

_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s\]]+)')


def _attrs(text: str) -> dict:
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _ATTR.findall(text)}


@dataclass
class Dot:
    nodes: dict = field(default_factory=dict)  # name -> attributes (with "cluster": the innermost cluster's label)
    edges: list = field(default_factory=list)  # (tail, head, attributes)
    clusters: dict = field(default_factory=dict)  # cluster id -> {"label", "parent", "nodes"}
    graph: dict = field(default_factory=dict)

    def role_nodes(self, fillcolor: str) -> list:
        return [n for n, a in self.nodes.items() if a.get("fillcolor") == fillcolor and not n.startswith("legend")]

    def drawn(self) -> dict:
        """The nodes, less the legend's samples."""
        return {n: a for n, a in self.nodes.items() if not n.startswith("legend")}

    def cluster_path(self, node: str) -> list:
        """Labels of the clusters holding `node`, outermost first."""
        cid = self.nodes[node].get("cluster_id")
        out = []
        while cid is not None:
            out.append(self.clusters[cid]["label"])
            cid = self.clusters[cid]["parent"]
        return out[::-1]


def read(source: str) -> Dot:
    d = Dot()
    stack: list = [None]
    for raw in source.splitlines():
        line = raw.strip()
        m = re.match(r"subgraph (cluster_\w+) \{", line)
        if m:
            d.clusters[m.group(1)] = {"label": None, "parent": stack[-1], "nodes": []}
            stack.append(m.group(1))
            continue
        if line.startswith("subgraph") or line == "{":
            stack.append(stack[-1])
            continue
        if line == "}":
            stack.pop()
            continue
        if line.startswith("graph [") and stack[-1] is None:
            d.graph = _attrs(line)
            continue
        if line.startswith("label=") and stack[-1] is not None:
            d.clusters[stack[-1]]["label"] = _attrs(line)["label"]
            continue
        if stack[-1] is not None and re.match(r"\w+=", line) and "[" not in line:
            a = _attrs(line)
            if "label" in a:
                d.clusters[stack[-1]]["label"] = a["label"]
            continue
        m = re.match(r'("?[\w]+"?) -> ("?[\w]+"?)(?: \[(.*)\])?$', line)
        if m:
            d.edges.append((m.group(1).strip('"'), m.group(2).strip('"'), _attrs(m.group(3) or "")))
            continue
        m = re.match(r'("?[\w]+"?) \[(.*)\]$', line)
        if m and m.group(1) not in ("graph", "node", "edge"):
            name = m.group(1).strip('"')
            if name not in d.nodes:
                d.nodes[name] = {**_attrs(m.group(2)), "cluster_id": stack[-1]}
                if stack[-1] is not None:
                    d.clusters[stack[-1]]["nodes"].append(name)
    return d


def layout(source: str) -> dict:
    """dot's layout of `source` (`dot -Tjson`)."""
    proc = subprocess.run(["dot", "-Tjson"], input=source, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def label_boxes(j: dict) -> list:
    """(label, (x0, y0, x1, y1)) of every edge label dot placed, from its text drawing operations."""
    boxes = []
    for e in j.get("edges", []):
        size, rects = 9.0, []
        for op in e.get("_ldraw_", []):
            if op["op"] == "F":
                size = float(op["size"])
            elif op["op"] == "T":
                x, y = op["pt"]
                w = float(op["width"])
                x0 = {"c": x - w / 2, "l": x, "r": x - w}[op["align"]]
                rects.append((x0, y - 0.25 * size, x0 + w, y + 0.8 * size))
        if rects:
            box = (
                min(r[0] for r in rects),
                min(r[1] for r in rects),
                max(r[2] for r in rects),
                max(r[3] for r in rects),
            )
            boxes.append((e.get("label"), box))
    return boxes


def overlapping_labels(j: dict) -> list:
    """Pairs of edge labels whose boxes overlap."""
    boxes = label_boxes(j)
    out = []
    for i, (la, a) in enumerate(boxes):
        for lb, b in boxes[i + 1 :]:
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                out.append((la, lb))
    return out


def size_pt(j: dict) -> tuple[float, float]:
    x0, y0, x1, y1 = map(float, j["bb"].split(","))
    return x1 - x0, y1 - y0
