"""The world: this process's rank among the processes that train together, and their collectives.

    w = gc.distributed.init()      # under `mpiexec -n 4`: rank 0..3 of 4; else a world of one
    w.rank, w.size, w.is_root

A process started by an MPI launcher (mpiexec, mpirun, srun: they set PMI_* or OMPI_* variables)
joins MPI_COMM_WORLD through mpi4py; in a world of several, an uncaught exception then aborts
every rank (as under `python -m mpi4py`). Any other process is a world of one: it trains as a single
process, never imports MPI (mpi4py need not be installed), and `init` says so once on stderr.
"""

import os
import sys
import time

import numpy as np

from graphc.errors import DistributedError

__all__ = ["World", "init", "world", "launched_size", "is_initialized"]

# Variables that MPI launchers set in the processes they start (MPICH/Hydra, Intel MPI and
# Slurm's PMI: PMI_SIZE; Open MPI: OMPI_COMM_WORLD_SIZE; PMIx launchers: PMIX_RANK).
_LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK")


def launched_size() -> int | None:
    """The world size an MPI launcher announced in this process's environment, else None."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        v = os.environ.get(var)
        if v and v.strip().isdigit():
            return int(v)
    if any(os.environ.get(v) for v in _LAUNCHER_VARS):
        return 0  # launched, size not announced: MPI will tell
    return None


class World:
    """The processes training together: `rank` (0..size-1) of `size`; `comm` is the mpi4py
    communicator, or None for a world of one (where every collective is the identity)."""

    def __init__(self, rank: int = 0, size: int = 1, comm=None, note: str = ""):
        self.rank, self.size, self.comm, self.note = int(rank), int(size), comm, note

    @property
    def is_root(self) -> bool:
        """Rank 0: the one rank that prints progress and writes files."""
        return self.rank == 0

    def __repr__(self):
        return f"<World rank {self.rank} of {self.size}{'' if self.comm is not None else ' (no MPI)'}>"

    # -- collectives (each rank must call them in the same order) --------------------------------
    def allreduce_(self, buf: np.ndarray, op: str = "sum") -> np.ndarray:
        """Reduce `buf` (C-contiguous) over the world, in place; op "sum", "max" or "min"."""
        if self.comm is None:
            return buf
        from mpi4py import MPI

        self.comm.Allreduce(MPI.IN_PLACE, buf, op={"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op])
        return buf

    def sum(self, values) -> np.ndarray:
        """Elementwise sums over the world of a small float64 vector (e.g. loss sums and counts)."""
        return self.allreduce_(np.array(values, dtype=np.float64).reshape(-1))

    def allgather(self, obj) -> list:
        """[obj of rank 0, obj of rank 1, ...] on every rank (small Python values)."""
        return [obj] if self.comm is None else self.comm.allgather(obj)

    def bcast(self, obj, root: int = 0):
        """Rank `root`'s obj on every rank (small Python values)."""
        return obj if self.comm is None else self.comm.bcast(obj, root=root)

    def gather_rows(self, part: np.ndarray) -> np.ndarray:
        """The ranks' arrays joined along axis 0 in rank order, on every rank (one Allgatherv)."""
        if self.comm is None:
            return part
        part = np.ascontiguousarray(part)
        rows = self.comm.allgather((part.shape[0], part.shape[1:], part.dtype.str))
        inner, dtype = (
            next((s, d) for n, s, d in rows if n) if any(n for n, _, _ in rows) else (part.shape[1:], part.dtype.str)
        )
        per_row = int(np.prod(inner, dtype=np.int64))
        counts = [n * per_row for n, _, _ in rows]
        out = np.empty((sum(n for n, _, _ in rows), *inner), dtype=np.dtype(dtype))
        send = part.astype(out.dtype, copy=False).reshape(-1) if part.size else np.empty(0, out.dtype)
        self.comm.Allgatherv(send, [out.reshape(-1), counts])
        return out

    def barrier(self) -> None:
        if self.comm is not None:
            self.comm.Barrier()


_WORLD: World | None = None


def is_initialized() -> bool:
    return _WORLD is not None


def init(quiet: bool = False) -> World:
    """Join the world (once per process; later calls return the same World).

    Under an MPI launcher: MPI_COMM_WORLD through mpi4py (DistributedError when mpi4py is not
    installed: `pip install 'graphc[mpi]'`). Otherwise a world of one, which is said once on
    stderr unless `quiet`.
    """
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    size = launched_size()
    if size is None:
        note = "graphc.distributed: not started by an MPI launcher (mpiexec); training as a world of one (rank 0 of 1)"
        if not quiet:
            print(note, file=sys.stderr, flush=True)
        _WORLD = World(0, 1, None, note)
        return _WORLD
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            f"graphc.distributed: this process was started by an MPI launcher (world size {size or '?'}) but "
            f"mpi4py cannot be imported ({exc}); install it with: pip install 'graphc[mpi]'"
        ) from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() > 1:
        _abort_on_uncaught_exception(comm)
    _WORLD = World(
        comm.Get_rank(),
        comm.Get_size(),
        comm,
        f"MPI world of {comm.Get_size()} ({MPI.Get_library_version().splitlines()[0].strip()})",
    )
    return _WORLD


def _abort_on_uncaught_exception(comm) -> None:
    """An uncaught exception on one rank aborts every rank (MPI_Abort), as `python -m mpi4py`
    does, instead of leaving the others waiting forever in their next collective."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        # mpiexec's forwarder drops what it has not yet read from a rank's pipe once the job
        # aborts; a moment's pause lets the traceback reach the user's terminal whole.
        time.sleep(0.5)
        comm.Abort(1)

    sys.excepthook = hook


def world() -> World:
    """This process's World, joining it (see `init`) on first use."""
    return _WORLD if _WORLD is not None else init()
