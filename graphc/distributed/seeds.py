"""Per-rank randomness: each rank draws its own dropout masks.

Every rank builds the same graph (so the start-up checks compare equal and checkpoints load on any
world size); the training step each rank compiles is a copy whose random ops have the rank folded
into their seed: dropout_mask seed (s,) becomes (s, rank) on rank `rank` of a world of several.
"""

from graphc.ir.graph import Graph

__all__ = ["per_rank_graph"]


def per_rank_graph(graph: Graph, rank: int, size: int) -> Graph:
    """`graph` itself for a world of one, else a copy (sharing `values`, so updates reach `graph`)
    whose random ops carry the rank in their seed attribute."""
    if size == 1 or not any(n.opdef.random and "seed" in n.attrs for n in graph.nodes):
        return graph
    from graphc.passes.rewrite import rewrite

    def rule(rw, node, inputs):
        if not (node.opdef.random and "seed" in node.attrs):
            return None
        attrs = {**node.attrs, "seed": (*node.attrs["seed"], int(rank))}
        return rw.emit(node.op, inputs, attrs)  # placed like `node` (the one being rewritten)

    return rewrite(graph, rule)
