"""The CUDA device: whether there is one (a GPU, or Numba's CUDA simulator), how kernels are
launched on it, and the count of the data that crosses between host and device.

numba.cuda is imported on first use (`cuda()`), never by importing graphc. Under the simulator
(NUMBA_ENABLE_CUDASIM=1, read by Numba when it is first imported) every CUDA thread is a Python
thread, so the launch shapes are small there (a few threads per block, one or two blocks) and
the kernels stride over their elements; on a GPU the same kernels run with full blocks.
"""

import importlib.util
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from graphc.errors import GraphcError

__all__ = [
    "CudaUnavailableError",
    "possible",
    "cuda",
    "empty",
    "to_device",
    "simulated",
    "describe",
    "Launch",
    "launch",
    "Transfers",
]

_INSTALL = "pip install -e '.[cuda]' (numba-cuda) on a machine with an NVIDIA GPU and its driver"
_SIM = "set NUMBA_ENABLE_CUDASIM=1 before Numba is imported to run on Numba's CUDA simulator (slow; for tests)"


class CudaUnavailableError(GraphcError, RuntimeError):
    """backend='cuda' with neither a usable GPU nor Numba's CUDA simulator."""


def _sim_env() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def possible() -> tuple[bool, str]:
    """(whether the cuda backend may run here, why not), without importing numba.cuda: the
    simulator is asked for, or numba-cuda is installed and an NVIDIA driver is present."""
    if importlib.util.find_spec("numba_cuda") is None:
        return False, f"backend 'cuda' needs numba-cuda (its GPU target and its simulator): {_INSTALL}; or {_SIM}"
    if _sim_env():
        return True, ""
    if not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version")):
        return False, f"backend 'cuda' found no NVIDIA GPU (no driver): {_INSTALL}; or {_SIM}"
    return True, ""


_CUDA = None


def cuda():
    """numba.cuda, once a device (GPU or simulator) answers; else a CudaUnavailableError naming
    both ways forward."""
    global _CUDA
    if _CUDA is not None:
        return _CUDA
    ok, why = possible()
    if not ok:
        raise CudaUnavailableError(why)
    try:
        from numba import cuda as numba_cuda

        available = numba_cuda.is_available()
    except Exception as exc:  # a broken driver or toolkit
        raise CudaUnavailableError(
            f"backend 'cuda': numba.cuda failed to start ({exc}): {_INSTALL}; or {_SIM}"
        ) from exc
    if not available:
        raise CudaUnavailableError(f"backend 'cuda': numba.cuda sees no usable GPU: {_INSTALL}; or {_SIM}")
    _CUDA = numba_cuda
    return _CUDA


def empty(shape, dtype):
    """A device array of `shape`; a 0-d value is kept as shape (1,) on the device (one layout for
    every kernel argument), and given its shape again when copied down."""
    return cuda().device_array(tuple(shape) or (1,), dtype)


def to_device(host: np.ndarray):
    """`host` copied to a new device array (a 0-d one as shape (1,), as `empty`)."""
    host = np.ascontiguousarray(host)
    return cuda().to_device(host.reshape(1) if host.ndim == 0 else host)


def simulated() -> bool:
    """Whether kernels run on Numba's CUDA simulator (Python threads), not a GPU."""
    import numba

    return bool(numba.config.ENABLE_CUDASIM)


def describe() -> str:
    """The device in words: a simulated one says so."""
    cu = cuda()
    if simulated():
        return "simulated CUDA device (Numba's CUDA simulator, NUMBA_ENABLE_CUDASIM=1: Python threads, no GPU)"
    dev = cu.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    free, total = cu.current_context().get_memory_info()
    cc = ".".join(map(str, dev.compute_capability))
    return f"{name} (compute capability {cc}, {total / 2**30:.0f} GiB)"


@dataclass(frozen=True)
class Launch:
    """Launch shapes: threads per block and the most blocks of an elementwise kernel, threads
    per block of a reduction (a power of two: the tree halves it) and the matmul tile."""

    threads: int
    max_blocks: int
    reduce_threads: int
    tile: int


_LAUNCH = None


def launch() -> Launch:
    """The launch shapes for this device (small under the simulator)."""
    global _LAUNCH
    if _LAUNCH is None:
        cuda()
        _LAUNCH = Launch(4, 2, 4, 4) if simulated() else Launch(256, 1024, 128, 16)
    return _LAUNCH


def blocks(n: int, threads: int, cap: int) -> int:
    """Blocks for n elements at `threads` per block, at most `cap` (kernels stride over the rest)."""
    return max(1, min(cap, -(-n // threads)))


@dataclass
class Transfers:
    """Host<->device copies: count and bytes per (direction, what), direction 'h2d' or 'd2h';
    what: 'input', 'output', 'variable', 'constant', 'random' (a mask drawn on the host)."""

    count: Counter = field(default_factory=Counter)
    nbytes: Counter = field(default_factory=Counter)

    def add(self, direction: str, what: str, nbytes: int) -> None:
        self.count[direction, what] += 1
        self.nbytes[direction, what] += int(nbytes)

    def total(self, direction: str, what: str | None = None) -> int:
        """Copies in `direction` (of `what`, or of every kind)."""
        return sum(c for (d, w), c in self.count.items() if d == direction and (what is None or w == what))

    def total_bytes(self, direction: str) -> int:
        return sum(b for (d, _), b in self.nbytes.items() if d == direction)

    def lines(self) -> list[str]:
        out = []
        for d, words in (("h2d", "host -> device"), ("d2h", "device -> host")):
            parts = [f"{c} {w}" for (dd, w), c in sorted(self.count.items()) if dd == d]
            out.append(
                f"{words}: {self.total(d)} copies, {self.total_bytes(d)} bytes"
                + (f" ({', '.join(parts)})" if parts else "")
            )
        return out
