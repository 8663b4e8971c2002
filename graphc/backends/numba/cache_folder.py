"""The kernel cache's folder, its fault counting and its counters (shared by cache.py and numba_cache.py)."""

import hashlib
import importlib.util
import os
import sys
import tempfile
import warnings
from pathlib import Path

CODEGEN_VERSION = "3"
STATS = {
    "compiled": 0,
    "direct": 0,
    "loaded": 0,
    "native": 0,
    "reused": 0,
    "rebuilt": 0,
    "faults": 0,
    "in_memory": 0,
    "compile_s": 0.0,  # seconds spent compiling or loading kernels
}
_WARNED: set = set()


class KernelCacheWarning(UserWarning):
    """The kernel cache cannot be written: kernels are compiled in memory (correct, but slower
    to start). Shown once per process."""


def _codegen_version() -> str:
    """Changes whenever the code that shapes compiled kernels changes (inlined helpers included),
    so entries compiled by an older graphc are never loaded."""
    here = Path(__file__).parent
    h = hashlib.sha256(CODEGEN_VERSION.encode())
    for name in (*_SHAPERS, *_DIRECT):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:10]


_SHAPERS = ("codegen.py", "vmath.py", "native.py", "native_entries.py", "numba_cache.py")
_DIRECT = (  # graphc's own compiler: it shapes machine code that the source key does not name
    "direct.py",
    "kernel_ir.py",
    "kernel_exprs.py",
    "kernel_types.py",
    "kernel_vmath.py",
    "kernel_thunk.py",
    "kernel_blas.py",
    "kernel_small_gemm.py",
)
_DIR = None


def _version(package: str) -> str:
    """An installed package's version, without importing it (or importlib.metadata, ~20 ms): the
    name of its dist-info folder beside it, else importlib.metadata."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return "none"
    found = sorted(Path(spec.origin).parent.parent.glob(f"{package}-*.dist-info"))
    if len(found) == 1:
        return found[0].name[len(package) + 1 : -len(".dist-info")]
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def cache_dir() -> Path | None:
    """This graphc's folder in the cache (created if missing); a temp folder if that cannot be
    created, None if neither can (kernels are then compiled in memory)."""
    global _DIR
    env = os.environ.get("GRAPHC_CACHE_DIR")
    if _DIR is not None and _DIR[0] == env:
        return _DIR[1]
    root = Path(env or Path.home() / ".cache" / "graphc")
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    name = f"numba-{_version('numba')}-llvmlite-{_version('llvmlite')}-{py}-g{_codegen_version()}"
    d = None
    for cand in (root / name, Path(tempfile.gettempdir()) / "graphc-cache" / name):
        try:
            if not cand.is_dir():  # an existing (perhaps read-only) folder is used as it is
                cand.mkdir(parents=True, exist_ok=True)
            d = cand
            break
        except OSError as e:
            fault(f"cannot create the kernel cache folder {cand}: {e}")
    _DIR = (env, d)
    return d


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:24]


def fault(message: str, warn: bool = True) -> None:
    """Count a cache fault; the first one that leaves a kernel without a disk entry warns (once
    per process: a read-only cache would otherwise warn for every kernel)."""
    STATS["faults"] += 1
    if warn and not _WARNED:
        _WARNED.add(message)
        text = f"graphc kernel cache: {message}; compiling in memory (further write failures are not shown)"
        warnings.warn(text, KernelCacheWarning, stacklevel=3)


def forget() -> None:
    """Find the folder again on next use, and warn again (cache.forget)."""
    global _DIR
    _WARNED.clear()
    _DIR = None
