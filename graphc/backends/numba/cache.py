"""The on-disk kernel cache: generated modules named by a content hash, compiled with njit(cache=True).

Layout: $GRAPHC_CACHE_DIR (default ~/.cache/graphc) / numba-<numba version>-<codegen version> /
gk_<hash>.py, with Numba's compiled objects in its __pycache__ beside them. The hash covers the
whole source, so a kernel file either holds exactly the expected text or is rebuilt; a second
process (or a second model with the same layer) imports the module and Numba loads the machine
code instead of compiling it.

Safety: a module file is written to a temporary name and linked into place only if absent
(two processes compiling the same kernel keep one file, whose mtime Numba's index relies on);
a file with the wrong content is replaced atomically (os.replace). A Numba cache entry that
fails to load (truncated or corrupt) is deleted and the kernel compiled again.
"""

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from pathlib import Path

CODEGEN_VERSION = "1"
STATS = {"compiled": 0, "loaded": 0, "reused": 0, "rebuilt": 0}
_LOCK = threading.Lock()
_MODULES: dict[str, object] = {}
_COMPILED: set = set()


def _codegen_version() -> str:
    """Changes whenever the code that shapes compiled kernels changes (inlined helpers included),
    so entries compiled by an older graphc are never loaded."""
    here = Path(__file__).parent
    h = hashlib.sha256(CODEGEN_VERSION.encode())
    for name in ("codegen.py", "vmath.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:10]


_DIR = None


def cache_dir() -> Path:
    global _DIR
    if _DIR is not None and _DIR[0] == os.environ.get("GRAPHC_CACHE_DIR"):
        return _DIR[1]
    import numba

    root = Path(os.environ.get("GRAPHC_CACHE_DIR") or Path.home() / ".cache" / "graphc")
    d = root / f"numba-{numba.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-g{_codegen_version()}"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        d = Path(tempfile.gettempdir()) / "graphc-cache" / d.name
        d.mkdir(parents=True, exist_ok=True)
    _DIR = (os.environ.get("GRAPHC_CACHE_DIR"), d)
    return d


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:24]


def _write_if_absent(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
        stale = True
    except (OSError, UnicodeDecodeError):
        stale = path.exists()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        if stale:
            _drop_numba_cache(path)
            os.replace(tmp, path)
            STATS["rebuilt"] += 1
        else:
            try:
                os.link(tmp, path)  # atomic create-if-absent
            except FileExistsError:
                if path.read_text() != text:
                    os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _drop_numba_cache(path: Path) -> None:
    pyc = path.parent / "__pycache__"
    if pyc.is_dir():
        for f in pyc.glob(path.stem + ".*"):
            try:
                f.unlink()
            except OSError:
                pass


def _import(path: Path, name: str):
    # registered in sys.modules: Numba's cached objects re-import their module by name
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def load(source: str):
    """The `kernel` dispatcher of a generated module (written, imported, memoised)."""
    h = source_hash(source)
    with _LOCK:
        mod = _MODULES.get(h)
        if mod is not None:
            STATS["reused"] += 1
            return mod.kernel
        path = cache_dir() / f"gk_{h}.py"
        _write_if_absent(path, source)
        try:
            mod = _import(path, f"graphc_gk_{h}")
        except (SyntaxError, ImportError, AttributeError):
            # unreadable module on disk (truncated or edited): rewrite it and try once more
            _drop_numba_cache(path)
            path.unlink(missing_ok=True)
            _write_if_absent(path, source)
            STATS["rebuilt"] += 1
            mod = _import(path, f"graphc_gk_{h}")
        _MODULES[h] = mod
        return mod.kernel


def ensure_compiled(disp, args) -> None:
    """Compile (or load from disk) `disp` for these arguments' types, rebuilding a bad cache entry."""
    from numba import typeof

    sig = tuple(typeof(a) for a in args)
    key = (id(disp), sig)
    if key in _COMPILED:
        return
    try:
        disp.compile(sig)
    except Exception:
        # a corrupt on-disk entry: forget it and compile from source
        path = Path(disp.py_func.__code__.co_filename)
        _drop_numba_cache(path)
        try:
            disp._cache.flush()
        except Exception:
            pass
        STATS["rebuilt"] += 1
        disp.compile(sig)
    stats = disp.stats
    if stats.cache_hits.get(sig):
        STATS["loaded"] += 1
    else:
        STATS["compiled"] += 1
    _COMPILED.add(key)


def stats() -> dict:
    """Counters since the process started: kernels compiled, loaded from disk, reused, rebuilt."""
    return dict(STATS)
