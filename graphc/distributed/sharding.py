"""How the ranks share work that is not training: evaluation and prediction data."""

from graphc.distributed.world import World

__all__ = ["shard_range"]


def shard_range(n: int, world: World) -> tuple[int, int]:
    """This rank's contiguous part [lo, hi) of n samples; parts differ by at most one sample
    (ranks past the n-th get none when there are fewer samples than ranks)."""
    q, r = divmod(n, world.size)
    lo = world.rank * q + min(world.rank, r)
    return lo, lo + q + (world.rank < r)
