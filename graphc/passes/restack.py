"""Restacking: a batched value that a scan already computes at every step is read from the scan.

The reverse scan of a gradient recomputes the forward body from the stacked carry-ins, and
loop_hoist moves the part that reads no cotangent out of it in batched form: the forward gate
pre-activation `x_t + h_{t-1} @ U` of every step becomes `xs + matmul(stacked h_in, U)`, one
product over all T steps, that the forward loop has already computed once, step by step. Here
such a value is recognised and the forward scan stacks it as a new per-step output instead
(JAX's remat policy "save the dots": the products are kept, elementwise work is recomputed).

A value `o` of the graph is *stacked body node `m`* of scan `F` when
  - `o` is F's xs k (m: its x-slice input k), or reads F's stacked y j (m: body output j) or
    stacked carry-ins i (m: carry input i), or
  - `o = op(args)` is the batched form (passes/batched.py) of a body node `m` of F on the body
    values its args stand for: stacked body nodes of F, F's captured values, equal constants.
Every such `o` built on an output of F (not on its xs alone: those are loop-invariant work) is
read from a stacked output of F, added where the body does not give one yet; only the ones that
something else reads are stacked: in `xs + h @ U`, the sum, not the product, is what the
reverse scan reads, so the forward stacks the sum and the product's batched form dies.

The same holds inside another scan's body (`body_reads`): a value of scan R's body built from
R's x-slices that stand for per-step values of F (the stacked pre-activation), by the ops F's
body applies to them, is F's body node at that step. The reverse body recomputes the gates'
sigmoids and tanhs from the stacked pre-activation this way, behind a split, which loop_hoist
leaves in the loop. Where R reads such a value, it reads it as a new x-slice, and F stacks it.
What R computes from it with its cotangents stays in R's body. Elementwise work that F does
not do is not moved out of R: it is as cheap inside the loop as after it.
"""

from dataclasses import dataclass

from graphc.ir.graph import Graph
from graphc.ir.node import Attrs, Node
from graphc.passes.batched import batched_form
from graphc.passes.rewrite import Rewriter, rewrite
from graphc.passes.scan_parts import SCAN, ScanParts, body_readers, has_scans, new_scan, project

__all__ = ["restack", "restack_reads", "stacked_matches", "body_reads"]


@dataclass(frozen=True)
class Match:
    """Outer value stands for the per-step values of body node `m` of scan `scan`; `computed`:
    it is built on an output of the scan (not a projection or xs of it itself)."""

    scan: Node
    m: Node
    computed: bool
    via_output: bool


def _same_const(x: Node, y: Node) -> bool:
    if not (x.is_const and y.is_const) or x.types != y.types:
        return False
    a, b = x.attrs["value"], y.attrs["value"]
    return a.shape == b.shape and bool((a == b).all())


class _Scan:
    """What matching needs of one scan: its parts, its body's readers, its captured values."""

    def __init__(self, node: Node):
        self.node, self.s = node, ScanParts.of(node)
        s = self.s
        self.readers = body_readers(s.body)
        self.invariant = {node.inputs[s.num_carry + s.num_xs + k].id: c for k, c in enumerate(s.body.captured)}
        self.length = node.attrs["length"]

    def body_value(self, x: Node, matches: dict) -> tuple[Node | None, bool]:
        """(the body node outer value x stands for, whether it is stacked), or (None, False)."""
        hit = matches.get(x.id, {}).get(self.node.id)
        if hit is not None:
            return hit.m, True
        return self.invariant.get(x.id), False

    def find(self, o: Node, matches: dict) -> Match | None:
        """The body node whose batched form `o` is, if any."""
        stacked_in = [x for x in o.inputs if self.node.id in matches.get(x.id, {})]
        if not stacked_in:
            return None
        first = matches[stacked_in[0].id][self.node.id].m
        for r in self.readers.get(first.id, ()):
            if r.op != o.op or len(r.inputs) != len(o.inputs) or r.is_tuple or not r.opdef.pure:
                continue
            orders = [r.inputs]
            if r.opdef.commutative and len(r.inputs) == 2:
                orders.append(r.inputs[::-1])
            for body_ins in orders:
                found = self._flags(o, body_ins, matches)
                if found is None:
                    continue
                flags, via = found
                form = batched_form(r, flags)
                if form is None or form[0] != o.op or Attrs(form[1]).key() != o.attrs.key():
                    continue
                if o.types == (((self.length, *r.shape), r.dtype),):
                    return Match(self.node, r, True, via)
        return None

    def _flags(self, o: Node, body_ins, matches) -> tuple[list[bool], bool] | None:
        """(which of o's inputs are stacked, whether one is built on an output of the scan) if
        o's inputs stand for `body_ins`, else None."""
        flags, via = [], False
        for x, b in zip(o.inputs, body_ins):
            m, stacked = self.body_value(x, matches)
            if m is b:
                flags.append(stacked)
                via = via or (stacked and matches[x.id][self.node.id].via_output)
            elif _same_const(x, b):
                flags.append(False)
            else:
                return None
        return flags, via


def stacked_matches(graph: Graph) -> dict[int, dict[int, Match]]:
    """{outer node id: {scan id: Match}} for the live values of `graph` that are stacked body
    nodes of a scan (see the module doc)."""
    live = graph.live_nodes()
    scans = {n.id: _Scan(n) for n in live if n.op == SCAN}
    matches: dict[int, dict[int, Match]] = {}
    for sc in scans.values():
        s, node = sc.s, sc.node
        for k, x in enumerate(s.x_inputs):
            matches.setdefault(node.inputs[s.num_carry + k].id, {})[node.id] = Match(node, x, False, False)
    for o in live:
        if o.opdef.takes_tuple and o.inputs and o.inputs[0].id in scans:
            sc = scans[o.inputs[0].id]
            s, i = sc.s, o.attrs["index"]
            nc, ny = s.num_carry, s.num_ys
            if nc <= i < nc + ny:
                m = s.body.outputs[i]
            elif s.saved and i >= nc + ny:
                m = s.carry_inputs[i - nc - ny]
            else:
                continue
            matches.setdefault(o.id, {})[sc.node.id] = Match(sc.node, m, False, True)
            continue
        if o.is_source or o.is_tuple or o.opdef.takes_tuple or not o.opdef.pure:
            continue
        candidates = dict.fromkeys(f for x in o.inputs for f in matches.get(x.id, {}))
        for f in candidates:
            hit = scans[f].find(o, matches)
            if hit is not None:
                matches.setdefault(o.id, {})[f] = hit
    return matches


def _plan(graph: Graph, matches) -> tuple[dict[int, list[Node]], dict[int, tuple[Match, int]]]:
    """({scan id: the body nodes it is to stack anew}, {outer id: (its match, the output index of
    the rewritten scan that stacks it)}) for the computed matches built on a scan's outputs that
    something other than another such value reads."""
    chosen = {}
    for oid, by_scan in matches.items():
        hits = [h for h in by_scan.values() if h.computed and h.via_output]
        if hits:
            chosen[oid] = hits[0]
    read_by_others = {n.id for n in graph.roots()}
    for n in graph.live_nodes():
        if n.id not in chosen:
            read_by_others.update(x.id for x in n.inputs)
    stack: dict[int, list[Node]] = {}
    frontier = {}
    for oid, h in chosen.items():
        if oid not in read_by_others:
            continue
        s = ScanParts.of(h.scan)
        nc, ny = s.num_carry, s.num_ys
        pos = next((nc + j for j, y in enumerate(s.body.outputs[nc:]) if y is h.m), None)
        if pos is None:
            ms = stack.setdefault(h.scan.id, [])
            if h.m not in ms:
                ms.append(h.m)
            pos = nc + ny + ms.index(h.m)
        frontier[oid] = (h, pos)
    return stack, frontier


def _body_map(r_scan: _Scan, f_scan: _Scan, matches) -> dict[int, Node]:
    """{R body node id: the F body node it equals at every step}: R's x-slices that stand for
    F's per-step values, R's captured values that are F's, and the R nodes built from those by
    the op (attributes, types) F's body applies to the same values."""
    rs, fid = r_scan.s, f_scan.node.id
    mapping: dict[int, Node] = {}
    outputs_read = False
    for k, x in enumerate(rs.x_inputs):
        hit = matches.get(r_scan.node.inputs[rs.num_carry + k].id, {}).get(fid)
        if hit is not None and hit.m.id in f_scan.readers:
            mapping[x.id] = hit.m
            outputs_read = outputs_read or hit.via_output
    if not outputs_read:  # R reads only F's own xs (two scans over one input): left as they are
        return {}
    for outer, c in r_scan.invariant.items():
        if outer in f_scan.invariant:
            mapping[c.id] = f_scan.invariant[outer]
    for r in rs.body.nodes:
        if r.is_source or r.id in mapping or not r.opdef.pure or not r.inputs:
            continue
        first = next((x for x in r.inputs if x.id in mapping), None)
        if first is None:
            continue
        for m in f_scan.readers.get(mapping[first.id].id, ()):
            if m.op != r.op or m.types != r.types or m.attrs.key() != r.attrs.key():
                continue
            orders = [m.inputs] + ([m.inputs[::-1]] if m.opdef.commutative and len(m.inputs) == 2 else [])
            if any(all(mapping.get(x.id) is y or _same_const(x, y) for x, y in zip(r.inputs, ins)) for ins in orders):
                mapping[r.id] = m
                break
    return mapping


def body_reads(graph: Graph, matches) -> dict[int, list[tuple[Node, Node, Node]]]:
    """{R scan id: [(R body node, F scan, F body node)]}: the values R's body computes as F's
    body does (see the module doc) that R's own work reads: the ones R is to read from F."""
    scans = {n.id: _Scan(n) for n in graph.live_nodes() if n.op == SCAN}
    out = {}
    for r_scan in scans.values():
        rs = r_scan.s
        sources = {f for k in range(rs.num_xs) for f in matches.get(r_scan.node.inputs[rs.num_carry + k].id, {})}
        reads, taken = [], set()
        outs = {o.id for o in rs.body.outputs}
        for fid in sources:
            if fid == r_scan.node.id or fid not in scans:
                continue
            mapping = _body_map(r_scan, scans[fid], matches)
            for r in rs.body.nodes:
                m = mapping.get(r.id)
                if m is None or r.is_source or r.is_tuple or m.is_source or r.id in taken:
                    continue
                readers = r_scan.readers.get(r.id, ())
                if r.id in outs or any(x.id not in mapping for x in readers):
                    reads.append((r, scans[fid].node, m))
                    taken.add(r.id)
        if reads:
            out[r_scan.node.id] = reads
    return out


def _rule(stack, frontier, reads=None):
    def rule(rw: Rewriter, node: Node, inputs):
        if node.id in stack:  # a scan stacking more of its body's values: new ys after the old ones
            s = ScanParts.of(node)
            nc, nx, ny = s.num_carry, s.num_xs, s.num_ys
            more = stack[node.id]
            xs = [(x, inputs[nc + k], None) for k, x in enumerate(s.x_inputs)]
            caps = [(c, inputs[nc + nx + k], None) for k, c in enumerate(s.body.captured)]
            new = new_scan(rw, s, range(nc), inputs, xs, caps, [*s.body.outputs, *more])
            outputs = [project(rw, new, i) for i in range(nc + ny)]
            outputs += [project(rw, new, nc + ny + len(more) + i) for i in range(len(node.types) - nc - ny)]
            rw.replace_outputs(node, outputs)
            rw.memo[("restacked", node.id)] = new
            return new
        if reads and node.id in reads:  # a scan reading values another scan now stacks
            return _reading(rw, node, inputs, reads[node.id], stack)
        if node.id not in frontier:
            return None
        hit, pos = frontier[node.id]
        new = rw.map[hit.scan.id]
        if hit.scan.id in stack and rw.memo.get(("restacked", hit.scan.id)) is not new:
            return None  # the scan could not be rebuilt with more outputs: o stays as it is
        return project(rw, new, pos)

    return rule


def _reading(rw: Rewriter, node: Node, inputs, reads, stack) -> Node | None:
    """Scan `node` with each body node of `reads` replaced by a new x-slice: the stacked output
    of the (rewritten) scan that now stacks the body node it equals."""
    s = ScanParts.of(node)
    nc, nx = s.num_carry, s.num_xs
    xs = [(x, inputs[nc + k], None) for k, x in enumerate(s.x_inputs)]
    for r, f, m in reads:
        new_f = rw.memo.get(("restacked", f.id))
        if new_f is None or new_f is not rw.map.get(f.id):
            return None  # the scan could not stack it: node stays as it is
        fs = ScanParts.of(f)
        xs.append((None, project(rw, new_f, fs.num_carry + fs.num_ys + stack[f.id].index(m)), r))
    caps = [(c, inputs[nc + nx + k], None) for k, c in enumerate(s.body.captured)]
    return new_scan(rw, s, range(nc), inputs, xs, caps, list(s.body.outputs))


def restack(graph: Graph) -> Graph:
    """Values a scan computes at every step anyway, recomputed outside it in batched form or
    inside another scan's body, read from the scan instead (see the module doc)."""
    return restack_reads(graph)[0]


def restack_reads(graph: Graph) -> tuple[Graph, bool]:
    """restack's graph, and whether a scan's body now reads values another scan stacks (the
    values it recomputed them from may then be unread: loop_prune's work)."""
    if not has_scans(graph):
        return rewrite(graph), False
    matches = stacked_matches(graph)
    stack, frontier = _plan(graph, matches)
    reads = body_reads(graph, matches)
    for rs in reads.values():
        for _, f, m in rs:
            ms = stack.setdefault(f.id, [])
            if m not in ms:
                ms.append(m)
    if not frontier and not reads:
        return rewrite(graph), False
    return rewrite(graph, _rule(stack, frontier, reads)), bool(reads)
