"""The on-disk kernel cache: generated modules named by a content hash, their machine code beside them.

Layout: $GRAPHC_CACHE_DIR (default ~/.cache/graphc) / numba-<numba>-py<python>-g<codegen hash> /
gk_<hash>.py, with Numba's index (.nbi) and machine code (.nbc) in __pycache__ beside them. The
package's fixed kernels (conv, pooling) keep theirs in the same folder, under lib/. Numba's own
choice of folder (NUMBA_CACHE_DIR, or a user-wide folder when the source's folder is read-only)
is not used: everything graphc compiles lives in one folder, found and cleared in one place.

Reading never writes: a module file that already holds the expected text is executed as it is
(no bytecode cache) and Numba's entries are only read, so a warm cache on a read-only folder
serves every kernel.

Faults cost a compile, never a failed or wrong run (each one is counted in `stats()["faults"]`):
- a module file that cannot be written (read-only folder, full disk, a directory in its place):
  the kernel is compiled in memory, with a warning once per process;
- a Numba entry that does not load (truncated, garbage, unpicklable): deleted and recompiled;
- a Numba entry that loads another kernel's machine code (files swapped or copied): each entry
  is checked against the function it was asked for (module, qualified name, argument types)
  before use; a foreign one is refused and recompiled, and the good code written over it.

Writes are atomic: a module file goes to a temporary name and is linked into place only if
absent (two processes compiling the same kernel keep one file), or replaced with os.replace.
"""

import hashlib
import inspect
import os
import sys
import tempfile
import threading
import types
import warnings
from pathlib import Path

CODEGEN_VERSION = "2"
STATS = {"compiled": 0, "loaded": 0, "reused": 0, "rebuilt": 0, "faults": 0, "in_memory": 0}
_LOCK = threading.RLock()
_MODULES: dict[str, object] = {}
_COMPILED: set = set()
_WARNED: set = set()


class KernelCacheWarning(UserWarning):
    """The kernel cache cannot be written: kernels are compiled in memory (correct, but slower
    to start). Shown once per process."""


def _codegen_version() -> str:
    """Changes whenever the code that shapes compiled kernels changes (inlined helpers included),
    so entries compiled by an older graphc are never loaded."""
    here = Path(__file__).parent
    h = hashlib.sha256(CODEGEN_VERSION.encode())
    for name in ("codegen.py", "vmath.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:10]


_DIR = None


def cache_dir() -> Path | None:
    """This graphc's folder in the cache (created if missing); a temp folder if that cannot be
    created, None if neither can (kernels are then compiled in memory)."""
    global _DIR
    env = os.environ.get("GRAPHC_CACHE_DIR")
    if _DIR is not None and _DIR[0] == env:
        return _DIR[1]
    import numba

    root = Path(env or Path.home() / ".cache" / "graphc")
    name = f"numba-{numba.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-g{_codegen_version()}"
    d = None
    for cand in (root / name, Path(tempfile.gettempdir()) / "graphc-cache" / name):
        try:
            if not cand.is_dir():  # an existing (perhaps read-only) folder is used as it is
                cand.mkdir(parents=True, exist_ok=True)
            d = cand
            break
        except OSError as e:
            _fault(f"cannot create the kernel cache folder {cand}: {e}")
    _DIR = (env, d)
    return d


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:24]


def _fault(message: str, warn: bool = True) -> None:
    """Count a cache fault; the first one that leaves a kernel without a disk entry warns (once
    per process: a read-only cache would otherwise warn for every kernel)."""
    STATS["faults"] += 1
    if warn and not _WARNED:
        _WARNED.add(message)
        text = f"graphc kernel cache: {message}; compiling in memory (further write failures are not shown)"
        warnings.warn(text, KernelCacheWarning, stacklevel=3)


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except (OSError, UnicodeDecodeError):
        return False


def _write(path: Path, text: str) -> bool:
    """Make `path` hold `text` (atomically); False if the folder cannot be written."""
    exists = os.path.lexists(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        if exists:
            _drop_numba_cache(path)
            os.replace(tmp, path)
            STATS["rebuilt"] += 1
        else:
            try:
                os.link(tmp, path)  # atomic create-if-absent; an existing mtime is kept
            except FileExistsError:
                if not _holds(path, text):
                    os.replace(tmp, path)
        return True
    except OSError as e:
        _fault(f"cannot write {path.name}: {e}")
        return False
    finally:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _drop_numba_cache(path: Path) -> None:
    """Delete Numba's entries for the kernel of module file `path` (best effort)."""
    for f in (path.parent / "__pycache__").glob(path.stem + ".*.nb[ic]"):
        try:
            f.unlink()
        except OSError:
            pass


def _module(source: str, name: str, filename: str):
    """Execute `source` as module `name`; registered in sys.modules because Numba's cached
    objects find their module's globals by its name."""
    mod = types.ModuleType(name)
    mod.__file__ = filename
    sys.modules[name] = mod
    try:
        exec(compile(source, filename, "exec"), mod.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def load(source: str):
    """The `kernel` dispatcher of a generated module (written if missing, executed, memoised)."""
    h = source_hash(source)
    with _LOCK:
        mod = _MODULES.get(h)
        if mod is not None:
            STATS["reused"] += 1
            return mod.kernel
        name = f"graphc_gk_{h}"
        d = cache_dir()
        path = d / f"gk_{h}.py" if d is not None else None
        on_disk = path is not None and (_holds(path, source) or _write(path, source))
        if not on_disk:
            STATS["in_memory"] += 1
        mod = _module(source, name, str(path) if on_disk else f"<graphc kernel {h}>")
        if on_disk:
            _attach(mod.kernel)
        _MODULES[h] = mod
        return mod.kernel


# -- Numba's side: where a function's machine code lives, and checking what is loaded ---------
try:
    from numba.core.caching import CompileResultCacheImpl, FunctionCache, InTreeCacheLocator, NullCache
except ImportError:  # numba missing: the backend says so when it is used
    CompileResultCacheImpl = FunctionCache = InTreeCacheLocator = NullCache = object


class _Locator(InTreeCacheLocator):
    """A generated kernel's entries go in __pycache__ beside its module; any other function's
    (the package's conv/pool kernels) in the cache folder's lib/<module folder>_<hash>/. Never
    NUMBA_CACHE_DIR, and a read-only folder is still read (writing it is what may fail)."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(self.folder_for(py_file))

    @classmethod
    def folder_for(cls, py_file: str) -> Path | None:
        d = cache_dir()
        if d is None:
            return None
        if Path(py_file).parent == d:
            return d / "__pycache__"
        return d / "lib" / cls.get_suitable_cache_subpath(py_file)


class _Impl(CompileResultCacheImpl):
    def __init__(self, py_func):  # Numba's, with one locator (NUMBA_CACHE_LOCATOR_CLASSES ignored)
        self._lineno = py_func.__code__.co_firstlineno
        source = inspect.getfile(py_func)
        self._locator = _Locator(py_func, source)
        fullname = f"{Path(source).stem}.{py_func.__qualname__}"
        self._filename_base = self.get_filename_base(fullname, getattr(sys, "abiflags", ""))


class KernelCache(FunctionCache):
    """Numba's per-function disk cache, made fault-proof: an entry that fails to load, or that
    holds another function's code, is a miss (and rewritten); a failed write is a warning."""

    _impl_class = _Impl

    def load_overload(self, sig, target_context):
        try:
            cres = super().load_overload(sig, target_context)
        except Exception as e:  # truncated, garbage, or code whose module is not loaded here
            self._discard(f"unreadable entry for {self._what()}: {type(e).__name__}: {e}")
            return None
        if cres is None:
            return None
        f = self._py_func
        if (cres.fndesc.modname, cres.fndesc.qualname, tuple(cres.signature.args)) != (
            f.__module__,
            f.__qualname__,
            tuple(sig.args) if hasattr(sig, "args") else tuple(sig),
        ):
            self._discard(f"foreign entry for {self._what()}: holds {cres.fndesc.modname}.{cres.fndesc.qualname}")
            return None
        return cres

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as e:  # read-only folder, full disk: the compiled code still runs
            _fault(f"cannot write Numba's entry for {self._what()}: {e}")

    def _what(self) -> str:
        return f"{self._py_func.__module__}.{self._py_func.__qualname__}"

    def _discard(self, message: str) -> None:
        """Count the fault and delete this function's index and data files, so that the fresh
        compile saves a clean entry (on a read-only folder the files stay and saving warns)."""
        _fault(message, warn=False)
        STATS["rebuilt"] += 1
        folder = Path(self._cache_path)
        for f in folder.glob(self._impl.filename_base + ".*"):
            try:
                f.unlink()
            except OSError:
                pass


def _attach(disp) -> None:
    """Give dispatcher `disp` graphc's disk cache (in place of Numba's own choice of folder)."""
    if isinstance(disp._cache, KernelCache):
        return
    if cache_dir() is None:
        disp._cache = NullCache()
        return
    try:
        disp._cache = KernelCache(disp.py_func)
    except OSError as e:  # its source file cannot be read: no disk cache for it
        _fault(f"cannot cache {disp.py_func.__qualname__}: {e}")
        disp._cache = NullCache()


def adopt(disp):
    """Put a package kernel (an @njit(cache=True) dispatcher) in graphc's cache instead of
    Numba's folder, with the cached dispatchers its module holds (the helpers it calls, which
    Numba compiles, and caches, on their own). Returns `disp`."""
    from numba.core.dispatcher import Dispatcher

    with _LOCK:
        for d in [disp, *disp.py_func.__globals__.values()]:
            if isinstance(d, Dispatcher) and not isinstance(d._cache, NullCache):
                _attach(d)
    return disp


def ensure_compiled(disp, args) -> None:
    """Compile (or load from disk) `disp` for these arguments' types, before its first call."""
    from numba import typeof

    sig = tuple(typeof(a) for a in args)
    key = (id(disp), sig)
    if key in _COMPILED:
        return
    if not isinstance(disp._cache, (KernelCache, NullCache)):
        adopt(disp)  # the package's fixed kernels arrive here with Numba's own cache
    try:
        disp.compile(sig)
    except Exception as e:
        # not a cache fault (those are misses): compile once more without the disk cache, so
        # that a genuine error shows as Numba's own
        _fault(f"compiling {disp.py_func.__qualname__} with the disk cache failed: {e}", warn=False)
        disp._cache = NullCache()
        disp.compile(sig)
    if disp.stats.cache_hits.get(sig):
        STATS["loaded"] += 1
    else:
        STATS["compiled"] += 1
    _COMPILED.add(key)


def forget() -> None:
    """Forget the kernels loaded in this process (and the warning given), so that the next
    compile reads the disk again, as a new process would: after clearing the cache folder, or
    in tests of the cache itself."""
    global _DIR
    with _LOCK:
        _MODULES.clear()
        _COMPILED.clear()
        _WARNED.clear()
        _DIR = None


def stats() -> dict:
    """Counters since the process started: kernels compiled, loaded from disk, reused in memory,
    rebuilt (a bad or stale entry replaced), compiled in memory (no writable cache), and cache
    faults met (each cost a compile, never a failed run)."""
    return dict(STATS)
