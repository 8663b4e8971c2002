"""The on-disk kernel cache: generated modules named by a content hash, their machine code beside them.

Layout: $GRAPHC_CACHE_DIR (default ~/.cache/graphc) / numba-<numba>-llvmlite-<llvmlite>-py<python>-
g<codegen hash> / gk_<hash>.py, with Numba's index (.nbi) and machine code (.nbc) in __pycache__
beside them, and under native/ each kernel's native entry (native.py: its object code per
argument types, loaded without Numba). The package's fixed kernels (conv, pooling, softmax rows)
keep Numba's entries in the same folder, under lib/. Numba's own choice of folder
(NUMBA_CACHE_DIR, or a user-wide folder when the source's folder is read-only) is not used:
everything graphc compiles lives in one folder, found and cleared in one place.

A kernel is a `Kernel` (`kernel(source)`, `library_kernel(module, name)`), bound to argument
types on first use: from its native entry when there is one (no Numba import: a warm process
starts in about a tenth of a second); else compiled by graphc itself (direct.py: its source
translated to LLVM IR and compiled through llvmlite, about 20 ms, no Numba), which writes the
native entry; else, for a kernel that does not translate, through Numba (its disk cache, or a
compile), which writes the native entry too where the kernel allows. GRAPHC_NATIVE_KERNELS=0
sends every kernel through Numba; GRAPHC_DIRECT_KERNELS=0 only those that would be compiled.

Reading never writes: a module file that already holds the expected text is executed as it is
(no bytecode cache) and Numba's entries are only read, so a warm cache on a read-only folder
serves every kernel.

Faults cost a compile, never a failed or wrong run (each one is counted in `stats()["faults"]`):
- a module file that cannot be written (read-only folder, full disk, a directory in its place):
  the kernel is compiled in memory, with a warning once per process;
- a Numba entry that does not load (truncated, garbage, unpicklable): deleted and recompiled;
- a Numba entry that loads another kernel's machine code (files swapped or copied): each entry
  is checked against the function it was asked for (module, qualified name, argument types)
  before use; a foreign one is refused and recompiled, and the good code written over it;
- a native entry that is damaged (checksum), foreign (another kernel or argument types) or for
  another CPU: refused, deleted, and the kernel is compiled again, which writes it again.

Writes are atomic: a module file goes to a temporary name and is linked into place only if
absent (two processes compiling the same kernel keep one file), or replaced with os.replace.
"""

import hashlib
import os
import sys
import tempfile
import threading
import time
import types
from contextlib import contextmanager
from pathlib import Path

from graphc.backends.numba import cache_folder, native
from graphc.backends.numba.cache_folder import STATS, KernelCacheWarning, cache_dir, fault, source_hash

__all__ = ["STATS", "KernelCacheWarning", "Kernel", "cache_dir", "fault", "source_hash", "kernel", "library_kernel"]
__all__ += ["composite_kernel", "load", "adopt", "ensure_compiled", "forget", "stats"]

_LOCK = threading.RLock()
_MODULES: dict[str, object] = {}


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
        fault(f"cannot write {path.name}: {e}")
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


def _module_file(h: str, source: str) -> Path | None:
    """The cache's module file of generated source `source` (hash h), written if missing; None
    if there is no folder or it cannot be written."""
    d = cache_dir()
    path = d / f"gk_{h}.py" if d is not None else None
    return path if path is not None and (_holds(path, source) or _write(path, source)) else None


def load(source: str):
    """The `kernel` dispatcher of a generated module (written if missing, executed, memoised)."""
    h = source_hash(source)
    with _LOCK:
        mod = _MODULES.get(h)
        if mod is not None:
            STATS["reused"] += 1
            return mod.kernel
        name = f"graphc_gk_{h}"
        path = _module_file(h, source)
        if path is None:
            STATS["in_memory"] += 1
        mod = _module(source, name, str(path) if path is not None else f"<graphc kernel {h}>")
        if path is not None:
            _attach(mod.kernel)
        _MODULES[h] = mod
        return mod.kernel


# -- kernels by content, bound to argument types on first use ---------------------------------------
class Kernel:
    """A kernel named by its content (a generated module's source, or a package kernel: its
    module's text and function name). `bind(args)` gives the callable for these arguments'
    types: the native function from its entry (native.py: Numba is not imported), or else the
    Numba dispatcher, compiled or loaded from Numba's cache, which writes the entry for next time."""

    def __init__(self, kernel_id: str, label: str, dispatcher, code=None):
        self.id, self.label, self._dispatcher = kernel_id, label, dispatcher
        self.code = code  # (module text, function name, generated?[, parts]): what direct.py compiles
        self._bound: dict = {}

    def dispatcher(self):
        """The Numba dispatcher (imports Numba)."""
        return self._dispatcher()

    def bind(self, args):
        fast = native.fast_key(args)
        fn = self._bound.get(fast)
        if fn is not None:
            return fn
        with _timed():
            key = native.type_key(args)
            fn = _native(self, key) if key is not None else None
            if fn is None and key is not None:
                fn = _direct(self, args, key)
            if fn is None:
                from graphc.backends.numba import numba_cache

                fn = self.dispatcher()
                numba_cache.ensure_compiled(fn, args, native_as=(self.id, key) if key is not None else None)
        self._bound[fast] = fn
        return fn


_DEPTH = threading.local()


@contextmanager
def _timed():
    """Add the time of the outermost compile or load of this thread to STATS["compile_s"] (a
    driver Numba compiles binds its parts inside it: counted once)."""
    depth = getattr(_DEPTH, "n", 0)
    _DEPTH.n = depth + 1
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _DEPTH.n = depth
        if depth == 0:
            STATS["compile_s"] += time.perf_counter() - t0


def _native(k: Kernel, key: str):
    d = cache_dir()
    if d is None or not native.enabled():
        return None
    folder = d / "native"
    try:
        fn = native.load(folder, k.id, key)
    except native.BadEntry as e:
        fault(f"native entry of {k.label}: {e}", warn=False)
        STATS["rebuilt"] += 1
        try:
            (folder / native.entry_name(k.id, key)).unlink()
        except OSError:
            pass
        return None
    except Exception as e:  # llvmlite missing or refusing the code: Numba compiles it instead
        fault(f"native entry of {k.label} not loadable: {type(e).__name__}: {e}", warn=False)
        return None
    if fn is not None:
        STATS["loaded"] += 1
        STATS["native"] += 1
    return fn


def _direct(k: Kernel, args, key: str):
    """The kernel compiled by graphc itself (direct.py), without Numba; None if it does not translate."""
    from graphc.backends.numba import direct  # a warm process never needs it

    if k.code is None or not direct.enabled():
        return None
    try:
        fdef = direct.find_function(*k.code)
        header, obj, thunk = direct.compile_entry(fdef, k.id, key, args, k.label)
    except direct.Unsupported:
        return None
    except Exception as e:  # llvmlite refusing the IR: a translator bug, which Numba's compile hides
        fault(f"direct compile of {k.label} failed: {type(e).__name__}: {e}", warn=False)
        return None
    text, generated = k.code[0], k.code[2]
    with _LOCK:
        d = cache_dir()
        # a generated kernel's source goes beside its machine code, as when Numba compiles it
        on_disk = d is not None and (not generated or _module_file(k.id, text) is not None)
        fn = native.add(d / "native" if on_disk else None, k.id, key, header, obj, thunk)
        if not on_disk or not fn.written:
            STATS["in_memory"] += 1
            if on_disk:
                fault(f"cannot write the native entry of {k.label}")
        STATS["compiled"] += 1
        STATS["direct"] += 1
    return fn


_KERNELS: dict[str, Kernel] = {}


def kernel(source: str) -> Kernel:
    """The kernel of a generated module (its file written if missing; executed only if Numba is needed)."""
    h = source_hash(source)
    return _kernel_of(h, lambda: Kernel(h, f"gk_{h}", lambda: load(source), (source, "kernel", True)))


def composite_kernel(source: str, parts: tuple, dispatcher) -> Kernel:
    """The kernel of a generated module that imports and calls other generated kernels (a scan's
    driver): parts, (name, source) of each kernel it imports as `name`, are inlined where called
    when graphc compiles it (direct.py); `dispatcher()` gives its Numba dispatcher (loading the
    parts first) for a driver that does not translate. Named by its source, which names its parts'
    modules by their hashes."""
    h = source_hash(source)
    return _kernel_of(h, lambda: Kernel(h, f"gk_{h}", dispatcher, (source, "kernel", True, tuple(parts))))


def _kernel_of(h: str, make) -> Kernel:
    """The kernel of source hash h made once in this process (make() the first time; reused after)."""
    with _LOCK:
        k = _KERNELS.get(h)
        if k is not None:
            STATS["reused"] += 1
            return k
        k = _KERNELS[h] = make()
        return k


def library_kernel(module: str, name: str) -> Kernel:
    """A package kernel: function `name` of module `module` (e.g. conv_kernels), named by the
    module file's text and the function's name."""
    spec_file = Path(__file__).parent / f"{module.rsplit('.', 1)[-1]}.py"
    text = spec_file.read_bytes()
    kid = f"lib:{module}.{name}:{hashlib.sha256(text).hexdigest()[:24]}"
    with _LOCK:
        k = _KERNELS.get(kid)
        if k is None:

            def dispatcher():
                import importlib

                return adopt(getattr(importlib.import_module(module), name))

            k = _KERNELS[kid] = Kernel(kid, f"{module}.{name}", dispatcher, (text.decode(), name, False))
        return k


def adopt(disp):
    """Put a package kernel (an @njit(cache=True) dispatcher) in graphc's cache folder (numba_cache.adopt)."""
    from graphc.backends.numba import numba_cache

    with _LOCK:
        return numba_cache.adopt(disp)


def _attach(disp) -> None:
    from graphc.backends.numba import numba_cache

    numba_cache.attach(disp)


def ensure_compiled(disp, args) -> None:
    """Compile (or load from disk) Numba dispatcher `disp` for these arguments' types, before its first call."""
    from graphc.backends.numba import numba_cache

    with _timed():
        numba_cache.ensure_compiled(disp, args)


def forget() -> None:
    """Forget the kernels loaded in this process (and the warning given), so that the next
    compile reads the disk again, as a new process would: after clearing the cache folder, or
    in tests of the cache itself."""
    with _LOCK:
        _MODULES.clear()
        _KERNELS.clear()
        cache_folder.forget()
        native.forget()
        nc = sys.modules.get("graphc.backends.numba.numba_cache")
        if nc is not None:
            nc.forget()


def stats() -> dict:
    """Counters since the process started: kernels compiled (of which `direct`: by graphc itself,
    without Numba), loaded from disk (of which `native`: through llvmlite alone, without Numba), reused in memory,
    rebuilt (a bad or stale entry replaced), compiled in memory (no writable cache), cache
    faults met (each cost a compile, never a failed run), and `compile_s`: the seconds spent
    compiling or loading kernels for new argument types."""
    return dict(STATS)
