"""Kernels run as machine code loaded through llvmlite alone: the warm path, which never imports Numba.

When Numba compiles a kernel (numba_cache.py), its object code is also written as a native
entry: one file per (kernel, argument types), named by a hash of both and of this machine's
LLVM CPU, holding a header and the object code. A later process loads the entry into one
MCJIT engine (llvmlite, ~0.05 s to start, under a millisecond per kernel) and calls the
kernel's native function through ctypes, so it needs neither Numba's import (~0.5 s) nor its
dispatcher's first-call set-up (~0.2 s per kernel signature).

What may be loaded this way is decided when the entry is written: the kernel's native
function may reach no symbol of Numba's runtime (no allocation, no threading layer: prange
kernels stay with Numba), only the C library, libm and Python; arrays are passed without a
memory-info pointer, so reference counting does nothing. The rest of the object code (Numba's
Python wrappers) is never called: its symbols that this process cannot resolve are bound to
a stub. A kernel's status is checked after each call; a kernel that would raise is a bug
(graphc checks its inputs before the call) and is reported as KernelFailed.

Entries keep the cache's guarantees: content-addressed, written atomically (temporary file,
then os.replace: concurrent writers write the same bytes), and an entry that does not
parse, holds another kernel or another machine's code, or fails its checksum is a miss (the
caller compiles with Numba and rewrites it), never a wrong run.
"""

import ctypes
import hashlib
import os
import re
import struct
import threading
from pathlib import Path

import numpy as np

from graphc.backends.numba import native_entries
from graphc.backends.numba.native_entries import (  # noqa: F401  (native's API: the entries it loads)
    MAGIC,
    BadEntry,
    entry_header,
    entry_name,
    read,
    undefined_symbols,
    write,
)
from graphc.backends.numba.native_entries import llvm_binding as _llvm
from graphc.backends.numba.native_entries import machine as _machine
from graphc.backends.numba.native_entries import write_atomic as _write_atomic

_LOCK = threading.RLock()
_ENGINE = None
_LOADED: dict[str, "NativeFunction"] = {}
_ADDED: dict[str, tuple[str, int]] = {}  # symbol -> (checksum of its object code, address): code is added once


class KernelFailed(RuntimeError):
    """A natively loaded kernel returned an error status (it would have raised under Numba)."""


def enabled() -> bool:
    """GRAPHC_NATIVE_KERNELS=0 turns the native path off (every kernel then goes through Numba)."""
    return os.environ.get("GRAPHC_NATIVE_KERNELS", "1") != "0"


# -- argument types, as Numba's typeof would see them ----------------------------------------------
def type_key(args) -> str | None:
    """A text naming the Numba types of `args` (dtype, rank, layout, writeable, aligned for arrays),
    or None if an argument is of a kind this module does not pass natively."""
    parts = []
    for a in args:
        if isinstance(a, np.ndarray):
            f = a.flags
            layout = "C" if f.c_contiguous else "F" if f.f_contiguous else "A"
            if not a.dtype.isnative or a.dtype.kind not in "biuf":
                return None
            parts.append(f"a{a.dtype.str}{a.ndim}{layout}{'w' if f.writeable else 'r'}{'a' if f.aligned else 'u'}")
        elif isinstance(a, (bool, np.bool_)):
            parts.append("b")
        elif isinstance(a, int):
            if not -(1 << 63) <= a < (1 << 63):
                return None
            parts.append("i")
        elif isinstance(a, float):
            parts.append("d")
        else:
            return None
    return ",".join(parts)


_FLAGS = 0x1 | 0x2 | 0x100 | 0x400  # NPY_ARRAY_C_CONTIGUOUS, F_CONTIGUOUS, ALIGNED, WRITEABLE
_INT64 = (-(1 << 63), 1 << 63)


def fast_key(args) -> tuple:
    """A key equal for arguments of equal type_key (cheaper: no text is made)."""
    key = []
    for a in args:
        t = type(a)
        if t is np.ndarray:
            key.append((a.dtype, a.ndim, a.flags.num & _FLAGS))
        elif t is int:
            key.append(int if _INT64[0] <= a < _INT64[1] else None)
        else:
            key.append(t)
    return tuple(key)


# -- the engine ------------------------------------------------------------------------------------
_STUB = ctypes.CFUNCTYPE(None)(lambda: None)  # bound to symbols only unreachable code refers to
_PROCESS = ctypes.CDLL(None)


def _engine():
    global _ENGINE
    if _ENGINE is None:
        llvm = _llvm()
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        tm = llvm.Target.from_default_triple().create_target_machine(codemodel="jitdefault", jit=True)
        _ENGINE = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
    return _ENGINE


_DEFINED = re.compile(r'^(?:define [^@\n]*@|@)"?([\w.$]+)"?(?:\(| =)', re.M)  # functions and globals


def add_ir(text: str, names: list, symbols: dict, optimize: bool = False) -> dict:
    """Compile LLVM IR `text` (graphc's own helpers: team.py's loops, the small gemm) for this
    CPU into this process's engine, `symbols` (name -> address) bound first; {name: address} of
    the functions `names`. optimize: LLVM's -O3 pipeline first (for code whose speed matters).
    The object code is kept in the kernel cache's folder like a kernel's (content-addressed,
    written atomically, checked when read), so a warm process loads it instead (the small gemm
    took 0.15 s to compile). Every symbol it defines is named graphc_...: they share one engine
    with every kernel, so a helper defining `log` would be what a kernel's call of libm's
    log reaches."""
    foreign = [d for d in _DEFINED.findall(text) if not d.startswith("graphc_")]
    if foreign:
        raise ValueError(f"graphc's helper code may define graphc_ symbols only, not {foreign}")
    with _LOCK:
        llvm = _llvm()
        engine = _engine()
        for s, a in symbols.items():
            if llvm.address_of_symbol(s) is None:
                llvm.add_symbol(s, a)
        key = hashlib.sha256(f"{text}|{optimize}|{_machine()}".encode()).hexdigest()[:32]
        obj = _read_helper(key)
        if obj is None:
            obj = _compile_helper(text, optimize)
            _write_helper(key, obj)
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        addrs = {n: engine.get_function_address(n) for n in names}
        if not all(addrs.values()):
            raise BadEntry(f"the helper code defines no {[n for n, a in addrs.items() if not a]}")
        return addrs


def _compile_helper(text: str, optimize: bool) -> bytes:
    llvm = _llvm()
    tm = native_entries.host_target_machine()
    mod = llvm.parse_assembly(text)
    mod.triple, mod.data_layout = tm.triple, str(tm.target_data)
    mod.verify()
    if optimize:  # not unrolled: the small gemm compiles in half the time (0.08 s) and runs as fast
        native_entries.optimise(mod, tm, unroll=False)
    return tm.emit_object(mod)


_HELPER_MAGIC = b"GRAPHC-HELPER-1\n"


def _helper_path(key: str) -> Path | None:
    from graphc.backends.numba import cache_folder

    d = cache_folder.cache_dir()
    return None if d is None else d / f"helper_{key}.o"


def _read_helper(key: str) -> bytes | None:
    """A helper's object code from the cache; None if absent or unusable (then it is compiled)."""
    path = _helper_path(key)
    try:
        data = path.read_bytes() if path is not None else b""
    except OSError:
        return None
    head = len(_HELPER_MAGIC) + 32
    if not data.startswith(_HELPER_MAGIC) or hashlib.sha256(data[head:]).digest() != data[len(_HELPER_MAGIC) : head]:
        return None
    return data[head:]


def _write_helper(key: str, obj: bytes) -> None:
    path = _helper_path(key)
    if path is not None:  # unwritable: compiled again next time
        _write_atomic(path.parent, path.name, _HELPER_MAGIC + hashlib.sha256(obj).digest() + obj)


_SMALL_GEMM = "graphc_small_sgemm"  # kernel_small_gemm.NAME


def _resolvable(name: str) -> bool:
    if name in _BLAS_NAMES:
        return _add_blas_symbols(name)
    if name == _SMALL_GEMM:  # compiled once per process, for the drivers that call it
        from graphc.backends.numba import kernel_small_gemm  # llvmlite.ir: imported only where needed

        if _llvm().address_of_symbol(name) is None:
            addr = add_ir(kernel_small_gemm.module_ir(), [name], {}, optimize=True)[name]
            _llvm().add_symbol(name, addr)
        return True
    return _llvm().address_of_symbol(name) is not None or hasattr(_PROCESS, name)


# -- BLAS: the gemm graphc's own kernels call (kernel_blas.py) -------------------------------------
# NumPy's own OpenBLAS (64-bit integers), the library graphc's other products (np.matmul) run on,
# else SciPy's (32-bit integers; the one Numba's np.dot calls). One library, one pool of worker
# threads: with SciPy's for the loops' products and NumPy's for the rest, both pools spin on the
# same two cores; NumPy's also has OpenBLAS's small-matrix kernels. Measured side by side, the
# LSTM step 10.9-12.1 ms against 14.8-17.1, the GRU's 8.7-11.4 against 12.1-14.8. The symbol
# names the integer width, so code made for one library never binds to the other.
_BLAS_LIBS = (("numpy", "libscipy_openblas64_*.so", "scipy_cblas_{}64_", 64),
              ("scipy", "libscipy_openblas-*.so", "scipy_cblas_{}", 32))  # fmt: skip
_BLAS_NAMES = {f"graphc_blas_{r}{bits}": (r, bits) for r in ("sgemm", "dgemm") for *_, bits in _BLAS_LIBS}
_BLAS = None  # {our symbol: address} of the library found, {} when none is


def _blas_addresses() -> dict:
    global _BLAS
    if _BLAS is None:
        import glob
        import importlib.util

        _BLAS = {}
        for package, pattern, name, bits in _BLAS_LIBS:
            spec = importlib.util.find_spec(package)  # finds the package without importing it
            if spec is None or not spec.submodule_search_locations:
                continue
            libs = Path(next(iter(spec.submodule_search_locations))).parent / f"{package}.libs"
            for path in sorted(glob.glob(str(libs / pattern))):
                try:
                    lib = ctypes.CDLL(path)  # the library NumPy (or Numba's np.dot) loads: the same one
                    found = {f"graphc_blas_{r}{bits}": ctypes.cast(getattr(lib, name.format(r)), ctypes.c_void_p).value
                             for r in ("sgemm", "dgemm")}  # fmt: skip
                except (OSError, AttributeError):
                    continue
                _BLAS = found
                from graphc.backends.numba import blas  # its thread count now drives this library too

                blas.rescan()
                return _BLAS
    return _BLAS


def blas_gemm(dtype: str) -> tuple[str, int] | None:
    """(symbol, integer bits) of the cblas gemm of kernel dtype "f32"/"f64" in this process, or None."""
    r = {"f32": "sgemm", "f64": "dgemm"}[dtype]
    for sym in _blas_addresses():
        if _BLAS_NAMES[sym][0] == r:
            return sym, _BLAS_NAMES[sym][1]
    return None


def blas_function(dtype: str) -> tuple[int, int] | None:
    """(address, integer bits) of the cblas gemm of "f32"/"f64" that blas_gemm names, or None."""
    found = blas_gemm(dtype)
    return None if found is None else (_blas_addresses()[found[0]], found[1])


def _add_blas_symbols(name: str) -> bool:
    addrs = _blas_addresses()
    llvm = _llvm()
    for s, a in addrs.items():
        if llvm.address_of_symbol(s) is None:
            llvm.add_symbol(s, a)
    return name in addrs


_RET = {"none": None, "bool": ctypes.c_uint8, "int64": ctypes.c_int64, "float64": ctypes.c_double}
_THUNK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p)


def load(folder: Path, kernel_id: str, key: str) -> "NativeFunction | None":
    """The kernel's native function from its entry; None if there is none; BadEntry if unusable."""
    name = entry_name(kernel_id, key)
    with _LOCK:
        fn = _LOADED.get(name)
        if fn is not None:
            return fn
        got = read(folder / name, kernel_id, key)
        if got is None:
            return None
        head, obj, thunk = got
        fn = _LOADED[name] = install(head, obj, thunk)
        return fn


def install(head: dict, obj: bytes, thunk: bytes) -> "NativeFunction":
    """Add an entry's object code (header `head`) to this process's engine: its native function."""
    with _LOCK:
        unreachable = set(head.get("unreachable", ()))
        stubs = []
        for s in undefined_symbols(obj):
            if _resolvable(s):
                continue
            if s not in unreachable:
                raise BadEntry(f"needs {s}, which this process does not have")
            stubs.append(s)
        sym, tsym = head["symbol"], head["thunk"]
        added = _ADDED.get(sym)
        if added is not None:
            if added[0] != head["sha"]:  # an entry rewritten since this process loaded the old code
                raise BadEntry(f"another version of {sym} is loaded in this process")
            addrs = added[1]
        else:
            llvm, engine = _llvm(), _engine()
            for s in stubs:
                llvm.add_symbol(s, ctypes.cast(_STUB, ctypes.c_void_p).value)
            for o in (obj, thunk):
                if o:  # graphc's own kernels have their thunk in the kernel's object code
                    engine.add_object_file(llvm.ObjectFileRef.from_data(o))
            engine.finalize_object()
            addrs = engine.get_function_address(sym), engine.get_function_address(tsym)
            if not all(addrs):
                raise BadEntry(f"defines no {sym} or {tsym}")
            _ADDED[sym] = (head["sha"], addrs)
        return NativeFunction(*addrs, head)


def add(folder: Path | None, kernel_id: str, key: str, header: dict, obj: bytes, thunk: bytes) -> "NativeFunction":
    """A kernel compiled in this process (direct.py): written as an entry in `folder` (if it can
    be), and installed here as a later load would find it."""
    head = entry_header(kernel_id, key, header, obj, thunk)
    # a folder that cannot be written: in memory only (fn.written says which)
    written = folder is not None and write(folder, kernel_id, key, header, obj, thunk)
    with _LOCK:
        fn = _LOADED[entry_name(kernel_id, key)] = install(head, obj, thunk)
        fn.written = written
        return fn


class NativeTask:
    """One call as native code for a worker that holds no GIL (team.py): `fn(block, arrays, ret)`
    returning a status, the objects its pointers point into kept alive (`keep`); `finish(status)`
    raises for a failed one, on the caller's thread. Called directly, it runs in this thread."""

    __slots__ = ("fn", "block", "arrays", "ret", "keep", "finish")

    def __init__(self, fn: int, block: int, arrays, ret: int, keep, finish):
        self.fn, self.block, self.arrays, self.ret, self.keep, self.finish = fn, block, arrays, ret, keep, finish

    def __call__(self):
        self.finish(_task_function(self.fn)(self.block, self.arrays, self.ret))


_TASK_FNS: dict = {}


def _task_function(addr: int):
    fn = _TASK_FNS.get(addr)
    if fn is None:
        fn = _TASK_FNS[addr] = _THUNK(addr)
    return fn


class NativeFunction:
    """A kernel's native function, called like its Numba dispatcher: fn(*args).

    Through its thunk (numba_cache.thunk_ir): thunk(block, arrays, ret), where `arrays` is the
    tuple of the array arguments (the thunk reads each one's data pointer, shape and strides from
    the ndarray object itself) and `block` holds the native function's address, then the scalar
    arguments as 64-bit slots. One ctypes argument conversion per call instead of one per field.
    """

    def __init__(self, addr: int, thunk: int, head: dict):
        self.recipe = head["args"]  # per argument: "a<ndim>", "i", "b", "d"
        self.label = head.get("label", "kernel")
        ret = _RET[head["ret"]]
        self.ret_type = ret
        self._thunk = _THUNK(thunk)
        self._addr = addr
        self._arrays = tuple(i for i, r in enumerate(self.recipe) if r[0] == "a")
        self._scalars = tuple(i for i, r in enumerate(self.recipe) if r[0] != "a")
        self._ret = ctypes.create_string_buffer(16)  # for kernels returning nothing (never read)
        self._blocks: dict = {}  # scalars -> (block, its address); entries never change (threads share them)
        self.written = True  # False: compiled in this process, and its entry could not be written

    def _block_of(self, scalars: tuple):
        got = self._blocks.get(scalars)
        if got is not None:
            return got
        blk = (ctypes.c_int64 * (1 + len(scalars)))()
        blk[0] = self._addr
        for k, (i, v) in enumerate(zip(self._scalars, scalars)):
            if self.recipe[i] == "d":
                blk[1 + k] = struct.unpack("<q", struct.pack("<d", float(v)))[0]
            else:
                blk[1 + k] = int(v)
        if len(self._blocks) > 64:  # scalars that keep changing: do not keep them all
            self._blocks.clear()
        got = self._blocks[scalars] = (blk, ctypes.addressof(blk))
        return got

    def _finish(self, status, ret):
        if status not in (0, -2):
            raise KernelFailed(f"graphc kernel {self.label} failed natively (status {status}); its inputs were checked")
        if self.ret_type is None:
            return None
        v = self.ret_type.from_buffer(ret).value
        return bool(v) if self.ret_type is ctypes.c_uint8 else v

    def __call__(self, *args):
        blk, addr = self._block_of(tuple(args[i] for i in self._scalars))  # blk: alive through the call
        ret = self._ret if self.ret_type is None else ctypes.create_string_buffer(16)  # one per call: threads
        status = self._thunk(addr, tuple(args[i] for i in self._arrays), ret)
        del blk
        return self._finish(status, ret)

    def bound(self, args):
        """A call with these arguments fixed (its block and array tuple made once)."""
        blk, addr = self._block_of(tuple(args[i] for i in self._scalars))
        arrays = tuple(args[i] for i in self._arrays)
        thunk, finish = self._thunk, self._finish
        shared = self.ret_type is None

        def call(*_, _keep=blk):
            ret = self._ret if shared else ctypes.create_string_buffer(16)
            return finish(thunk(addr, arrays, ret), ret)

        return call

    def task(self, args):
        """This call as a team.NativeTask (run by a worker that holds no GIL); its return value
        is dropped, its status checked."""
        blk, addr = self._block_of(tuple(args[i] for i in self._scalars))
        arrays = tuple(args[i] for i in self._arrays)
        ret = ctypes.create_string_buffer(16)

        def finish(status):
            self._finish(status, ret)

        thunk = ctypes.cast(self._thunk, ctypes.c_void_p).value
        return NativeTask(thunk, addr, arrays, ctypes.addressof(ret), (blk, ret, args), finish)


def forget() -> None:
    """Forget the entries loaded (their code stays in the engine; loading again re-reads the file)."""
    with _LOCK:
        _LOADED.clear()
