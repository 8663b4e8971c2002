"""Numba's side of the kernel cache (imported only when a kernel goes through Numba).

Where a dispatcher's machine code lives (graphc's cache folder, never NUMBA_CACHE_DIR), checking
what Numba loads from it, compiling before the first call, and writing the native entry
(native.py) of each kernel compiled or loaded, so that the next process needs no Numba.
"""

import hashlib
import inspect
import re
import sys
from pathlib import Path

from numba import typeof
from numba.core import types
from numba.core.caching import CompileResultCacheImpl, FunctionCache, InTreeCacheLocator, NullCache
from numba.core.dispatcher import Dispatcher
from numba.np.numpy_support import as_dtype

from graphc.backends.numba import cache_folder as cache
from graphc.backends.numba import kernel_thunk, native


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
        d = cache.cache_dir()
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
        self.payloads = {}  # signature -> the serialised compile result last saved or loaded

    def reduce(self, cres):
        payload = super().reduce(cres)
        self.payloads[tuple(cres.signature.args)] = payload
        return payload

    def rebuild(self, target_context, payload):
        cres = super().rebuild(target_context, payload)
        self.payloads[tuple(cres.signature.args)] = payload
        return cres


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
            cache.fault(f"cannot write Numba's entry for {self._what()}: {e}")

    def _what(self) -> str:
        return f"{self._py_func.__module__}.{self._py_func.__qualname__}"

    def _discard(self, message: str) -> None:
        """Count the fault and delete this function's index and data files, so that the fresh
        compile saves a clean entry (on a read-only folder the files stay and saving warns)."""
        cache.fault(message, warn=False)
        cache.STATS["rebuilt"] += 1
        folder = Path(self._cache_path)
        for f in folder.glob(self._impl.filename_base + ".*"):
            try:
                f.unlink()
            except OSError:
                pass


def attach(disp) -> None:
    """Give dispatcher `disp` graphc's disk cache (in place of Numba's own choice of folder)."""
    if isinstance(disp._cache, KernelCache):
        return
    if cache.cache_dir() is None:
        disp._cache = NullCache()
        return
    try:
        disp._cache = KernelCache(disp.py_func)
    except OSError as e:  # its source file cannot be read: no disk cache for it
        cache.fault(f"cannot cache {disp.py_func.__qualname__}: {e}")
        disp._cache = NullCache()


def adopt(disp):
    """Put a package kernel (an @njit(cache=True) dispatcher) in graphc's cache instead of
    Numba's folder, with the cached dispatchers its module holds (the helpers it calls, which
    Numba compiles, and caches, on their own). Returns `disp`."""
    for d in [disp, *disp.py_func.__globals__.values()]:
        if isinstance(d, Dispatcher) and not isinstance(d._cache, NullCache):
            attach(d)
    return disp


_COMPILED: set = set()


def ensure_compiled(disp, args, native_as=None) -> None:
    """Compile (or load from disk) `disp` for these arguments' types, before its first call;
    native_as=(kernel id, type key): also write the kernel's native entry."""
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
        cache.fault(f"compiling {disp.py_func.__qualname__} with the disk cache failed: {e}", warn=False)
        disp._cache = NullCache()
        disp.compile(sig)
    if disp.stats.cache_hits.get(sig):
        cache.STATS["loaded"] += 1
    else:
        cache.STATS["compiled"] += 1
    _COMPILED.add(key)
    if native_as is not None and isinstance(disp._cache, KernelCache):
        payload = disp._cache._impl.payloads.get(sig)
        if payload is not None:
            try:
                write_native(native_as, payload, disp.py_func.__qualname__)
            except Exception as e:  # the kernel runs through Numba in every process: slower to start, still right
                cache.fault(f"no native entry for {disp.py_func.__qualname__}: {type(e).__name__}: {e}", warn=False)


def forget() -> None:
    _COMPILED.clear()


# -- native entries ---------------------------------------------------------------------------------
_RUNTIME = re.compile(r"^(NRT_|numba_|_numba|Py|_Py)")
_NULL_MEMINFO_ONLY = {"NRT_MemInfo_call_dtor"}  # reached only through a non-null meminfo's decref
_DEFINE = re.compile(r'^define [^@]*@("[^"]+"|[\w.$-]+)\(')
_DECLARE = re.compile(r'^(?:declare [^@]*@("[^"]+"|[\w.$-]+)\(|@("[^"]+"|[\w.$-]+) = external )')
_REF = re.compile(r'@("[^"]+"|[\w.$-]+)')


def _ir_graph(text: str):
    """Defined functions (name -> (parameter list text, referenced names)) and declared names."""
    defs, decls, cur, refs = {}, set(), None, set()
    for line in text.splitlines():
        if cur is not None:
            if line == "}":
                cur = None
            else:
                refs.update(m.strip('"') for m in _REF.findall(line))
            continue
        m = _DEFINE.match(line)
        if m:
            cur, refs = m.group(1).strip('"'), set()
            defs[cur] = (_params(line[m.end() :]), refs)
            continue
        m = _DECLARE.match(line)
        if m:
            decls.add((m.group(1) or m.group(2)).strip('"'))
    return defs, decls


def _params(text: str) -> str:
    """The parameter list at the start of `text` (up to its closing parenthesis)."""
    depth = 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                return text[:i]
            depth -= 1
    return text


def _reached(defs, decls, root):
    seen, todo, ext = {root}, [root], set()
    while todo:
        for r in defs[todo.pop()][1]:
            if r in defs and r not in seen:
                seen.add(r)
                todo.append(r)
            elif r in decls and not r.startswith("llvm."):  # intrinsics: checked as the object's symbols
                ext.add(r)
    return ext


def _flat_codes(llty) -> str:
    if isinstance(llty, tuple):
        return "".join(_flat_codes(t) for t in llty)
    t = str(llty)
    if t.endswith("*") or t == "ptr":
        return "P"
    return {"i64": "I", "i8": "B", "float": "F", "double": "D"}[t]


def _recipe(ty) -> str:
    if isinstance(ty, types.Array):
        return f"a{ty.ndim}"
    if isinstance(ty, types.Boolean):
        return "b"
    if isinstance(ty, types.Integer) and ty.bitwidth == 64 and ty.signed:
        return "i"
    if ty == types.float64:
        return "d"
    raise KeyError(ty)


_RETURNS = {types.none: "none", types.boolean: "bool", types.int64: "int64", types.float64: "float64"}


def write_native(native_as, payload, label: str) -> None:
    """Write the native entry of one compiled kernel, if it can run without Numba's runtime."""
    d = cache.cache_dir()
    if d is None:
        return
    import llvmlite.binding as llvm

    (_, kind, libdata), fndesc, sig = payload[0], payload[1], payload[3]
    if kind != "object" or sig.return_type not in _RETURNS:
        return
    obj, shared = libdata
    try:
        from numba.core.registry import cpu_target

        dm = cpu_target.target_context.data_model_manager
        codes = "".join(_flat_codes(dm[t].get_argument_type()) for t in sig.args)
        recipe = [_recipe(t) for t in sig.args]
        defs, decls = _ir_graph(str(llvm.parse_bitcode(shared)))
        root = fndesc.llvm_func_name
        params = defs[root][0]
        undefined = set(native.undefined_symbols(obj))
    except (KeyError, native.BadEntry):
        return  # an argument or return kind the native path does not pass
    if len(re.findall(r"%[\w.$\"-]+", params)) != 2 + len(codes):  # retptr, excinfo, then the flattened arguments
        return
    reached = _reached(defs, decls, root)
    process = native._PROCESS
    for s in reached - _NULL_MEMINFO_ONLY:
        if _RUNTIME.match(s) or not hasattr(process, s):
            return  # needs Numba's runtime (allocation, threads, exceptions): stays with Numba
    for s in undefined - decls:  # lowered intrinsics (expf, memset): the C library must have them
        if not hasattr(process, s):
            return
    unreachable = sorted((undefined & decls) - reached | (_NULL_MEMINFO_ONLY & undefined))
    thunk = "graphc_thunk_" + hashlib.sha256(root.encode()).hexdigest()[:24]
    text = thunk_ir(thunk, sig.args, codes)
    if text is None:
        return
    tm = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2, codemodel="jitdefault"
    )
    thunk_obj = tm.emit_object(llvm.parse_assembly(text))
    header = {"symbol": root, "thunk": thunk, "codes": codes, "args": recipe, "ret": _RETURNS[sig.return_type]}
    header.update(unreachable=unreachable, label=label)
    kid, key = native_as
    if not native.write(d / "native", kid, key, header, obj, thunk_obj):
        cache.fault(f"cannot write the native entry of {label}", warn=False)


def thunk_ir(name: str, argtys, codes: str) -> str | None:
    """The thunk (kernel_thunk.thunk_ir) of a Numba-compiled function of argument types `argtys`;
    None if Numba's data model (`codes`) is not the one the thunk mirrors."""
    kinds = []
    for ty in argtys:
        if isinstance(ty, types.Array):
            kinds.append(("a", ty.ndim, as_dtype(ty.dtype).itemsize))
        else:
            kinds.append("b" if isinstance(ty, types.Boolean) else "d" if ty == types.float64 else "i")
    if kernel_thunk.codes(kinds) != codes:
        return None  # a data model this thunk does not mirror
    return kernel_thunk.thunk_ir(name, kinds)
