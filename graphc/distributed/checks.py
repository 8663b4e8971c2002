"""Start-up checks of data-parallel training: every rank must run the same graphc, the same
model and the same parameters, or the all-reduced gradients would mix unrelated numbers.

One small collective (an allgather of three short digests) compares them; a difference is a
DistributedError on every rank naming the ranks that differ from rank 0 and what differs.
"""

import hashlib

import numpy as np

from graphc.distributed.world import World
from graphc.errors import DistributedError

__all__ = ["graph_digest", "values_digest", "check_same"]


def graph_digest(graph) -> str:
    """A digest of the graph's structure: every node's op, name, type, inputs and attributes."""
    h = hashlib.sha256()
    for n in graph.nodes:
        h.update(repr((n.op, n.name, n.shape, n.dtype, [x.id for x in n.inputs], n.attrs.key())).encode())
    h.update(repr((sorted(graph.outputs), sorted(graph.updates))).encode())
    return h.hexdigest()[:16]


def values_digest(values: dict) -> str:
    """A digest of the variables' names, types and bytes."""
    h = hashlib.sha256()
    for k in sorted(values):
        a = np.ascontiguousarray(values[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def check_same(world: World, graph, values: dict | None = None, what: str = "model", arrays=None) -> None:
    """DistributedError on every rank unless all ranks have rank 0's graphc version, graph and
    values (default: the graph's variables), and, when given, the same `arrays` ({label: array},
    such as the training data, which every rank must load alike for the shards to cover it)."""
    if world.size == 1:
        return
    import graphc

    mine = {
        "graphc version": graphc.__version__,
        f"{what} (graph)": graph_digest(graph),
        "parameter values": values_digest(graph.values if values is None else values),
    }
    for label, a in (arrays or {}).items():
        mine[label] = values_digest({"": a})
    every = world.allgather(mine)
    problems = []
    for key in mine:
        odd = [r for r, d in enumerate(every) if d[key] != every[0][key]]
        if odd:
            shown = ", ".join(f"rank {r} has {every[r][key]}" for r in odd)
            problems.append(f"{key}: rank 0 has {every[0][key]}, {shown}")
    if problems:
        hint = (
            "every rank must run the same graphc, build the same model with the same seed (or load the "
            "same checkpoint) and load the same data"
        )
        raise DistributedError(
            f"distributed training on {world.size} ranks cannot start, the ranks differ: "
            + "; ".join(problems)
            + f"; {hint}"
        )
