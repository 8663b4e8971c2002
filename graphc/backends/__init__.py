"""Backends behind one interface: reference (NumPy, the oracle) and numba (CPU kernels)."""

from graphc.backends.base import Backend, Executable, backend_names, compile, get_backend  # noqa: F401
from graphc.backends.reference import run  # noqa: F401
