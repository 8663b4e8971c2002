"""Data-parallel training over MPI (mpi4py): one process per rank, gradients all-reduced in the step.

    mpiexec -n 4 python train.py

    model = nn.Model(net, input_shape=(1, 8, 8), optimizer=nn.optim.Adam(1e-3), distributed=True)
    model.fit(X, y, epochs=10, batch_size=32)   # 32 samples per rank, a global batch of 4 x 32

`init()` joins the world (MPI_COMM_WORLD under an MPI launcher, else a world of one, without
MPI). Importing this package imports no MPI. See docs/distributed.md.
"""

from graphc.distributed.world import World, init, is_initialized, launched_size, world
from graphc.errors import DistributedError

__all__ = ["World", "init", "world", "is_initialized", "launched_size", "DistributedError"]
