"""The CUDA backend: the fused graph's kernels as CUDA kernels, through numba.cuda (numba-cuda).

The same schedule as the Numba CPU backend (graphc.backends.schedule: the same fusion groups,
in-place updates and memory plan) with a second runtime: device buffers allocated once,
elementwise and reduction kernels generated from the same op templates (kernels.py), and
library-call lowerings registered on the ops under the key "cuda" (lowerings*.py). Variables
stay on the device between calls (values.py); `step.report()` counts what crosses.

Importing this package never imports numba.cuda. The backend registers when it may run (the
simulator is asked for with NUMBA_ENABLE_CUDASIM=1, or numba-cuda and an NVIDIA driver are
present); otherwise compiling for it is a CudaUnavailableError naming both ways forward.
"""

from graphc.backends.base import Backend, register_backend, register_unavailable
from graphc.backends.cuda.device import CudaUnavailableError, possible

__all__ = ["CudaBackend", "CudaUnavailableError", "device_line", "unavailable_reason"]

BACKEND = "cuda"  # the key of this backend's lowerings (OpDef.lowerings)


class CudaBackend(Backend):
    options = ("apply_updates", "passes", "disable", "trace")

    def compile(self, graph, outputs=None, **options):
        """Options: apply_updates (see gc.compile), passes=True (run graphc.passes.optimize
        first), disable=(pass names), trace=callable (e.g. print: the graph before and after each pass)."""
        from graphc.backends.cuda.executor import CudaExecutable

        return CudaExecutable(graph, outputs, **options)


_ok, _why = possible()
if _ok:
    register_backend(BACKEND)(CudaBackend)
else:
    register_unavailable(BACKEND, CudaUnavailableError(_why))


def unavailable_reason() -> str:
    """Why the backend cannot run here, in a few words (for `graphc info`)."""
    ok, why = possible()
    if ok:
        return ""
    if "numba-cuda" in why.split(":")[0]:
        return "numba-cuda is not installed: pip install -e '.[cuda]'"
    return "no NVIDIA GPU; NUMBA_ENABLE_CUDASIM=1 runs Numba's CUDA simulator"


def device_line() -> str:
    """The CUDA device for `graphc info`: its name (a simulated one says so), or none."""
    from graphc.backends.cuda import device

    if not possible()[0]:
        return "CUDA: none"
    try:
        return f"CUDA: {device.describe()}"
    except CudaUnavailableError as exc:
        return f"CUDA: none ({exc})"
