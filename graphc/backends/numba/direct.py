"""Kernels compiled by graphc itself, straight to machine code through llvmlite: no Numba.

A cold compile through Numba costs its import and CPU target (about a second) and 0.1-0.3 s
per kernel signature (bytecode analysis, type inference, lowering, LLVM). The kernels graphc
generates, and its plain package kernels, use a small part of Numba's Python; kernel_ir.py
translates that part to LLVM IR, and this module optimises it (LLVM -O3, loop and SLP
vectorisation, this machine's CPU), emits object code and its thunk (kernel_thunk.py), and
gives it to native.py as a native entry: written to the cache for the next process and
installed in this one, so a kernel compiled here runs exactly as a warm process loads it.
About 20 ms per kernel, and a graph whose kernels all translate never imports Numba.

A kernel that does not translate (prange, helper calls, tuples, anything kernel_ir refuses)
goes through Numba as before. GRAPHC_DIRECT_KERNELS=0 sends every kernel through Numba.
"""

import ast
import hashlib
import os
import threading

from graphc.backends.numba import kernel_ir, kernel_thunk, native, native_entries
from graphc.backends.numba.kernel_types import ITEMSIZE, ArrayType, Unsupported

__all__ = ["enabled", "Code", "find_function", "compile_entry", "Unsupported"]

_LOCK = threading.Lock()
_TM = None
_FUNCS: dict = {}  # (source hash, name) -> FunctionDef, or the Unsupported met


def enabled() -> bool:
    return os.environ.get("GRAPHC_DIRECT_KERNELS", "1") != "0" and native.enabled()


class Code:
    """A kernel function's AST with what kernel_ir needs from its module: the module's other
    njit functions (helpers, inlined where called) and which names are the 1-D view intrinsic."""

    def __init__(self, fn, helpers: dict, flat: frozenset, consts: dict, f32: frozenset, generated: bool):
        self.fn, self.helpers, self.flat, self.consts, self.f32 = fn, helpers, flat, consts, f32
        self.generated = generated


def find_function(source: str, name: str, generated: bool, parts: tuple = ()) -> Code:
    """Function `name` of module text `source`, if its decorator asks for what kernel_ir gives
    (`njit` without parallel, fastmath at most {'contract'}, numpy's error model); Unsupported
    otherwise. A generated module is its kernel alone; a package module's kernels may call
    its other njit functions, and `_flat`, its intrinsic for the 1-D view of a C-contiguous array.
    parts: (name, source) of the generated modules whose kernels a generated module (a scan's
    driver) imports as `name` and calls: inlined where called, as helpers are."""
    key = (hashlib.sha256(source.encode()).hexdigest(), name, tuple(source_hash_of(t) for _, t in parts))
    got = _FUNCS.get(key)
    if got is None:
        got = _FUNCS[key] = _find(source, name, generated)
        if parts and not isinstance(got, Unsupported):
            got = _with_parts(got, parts)
    if isinstance(got, Unsupported):
        raise got
    return got


def source_hash_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _with_parts(code: Code, parts) -> "Code | Unsupported":
    """`code` with the kernels of `parts` as its helpers; every part must read `F` as the same type."""
    helpers, f32 = {}, None
    for name, text in parts:
        try:
            part = find_function(text, "kernel", True)
        except Unsupported as e:
            return Unsupported(f"{name}: {e}")
        if f32 is not None and part.f32 != f32:
            return Unsupported("parts that name np.float32 otherwise")
        f32 = part.f32
        helpers[name] = part.fn
    return Code(code.fn, helpers, frozenset(), {}, frozenset(f32 or ()), True)


def _find(source, name, generated):
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return Unsupported(f"source does not parse: {e}")
    funcs, flat, consts, f32 = {}, set(), {}, set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if _constant(node.value):  # a global a kernel reads: a compile-time constant, as in Numba
                consts[node.targets[0].id] = node.value
            elif ast.unparse(node.value) == "np.float32":  # F = np.float32 (the generated header)
                f32.add(node.targets[0].id)
            continue
        if not isinstance(node, ast.FunctionDef):
            continue
        deco = [ast.unparse(d) for d in node.decorator_list]
        if node.name == "_flat" and deco == ["intrinsic"] and not generated:
            flat.add(node.name)
            continue
        try:
            _check_decorator(node, generated)
        except Unsupported as e:
            funcs[node.name] = e
            continue
        funcs[node.name] = node
    fn = funcs.get(name)
    if fn is None:
        return Unsupported(f"no function {name}")
    if isinstance(fn, Unsupported):
        return fn
    helpers = {k: v for k, v in funcs.items() if k != name and not isinstance(v, Unsupported)}
    if generated:
        return Code(fn, {}, frozenset(), {}, frozenset(f32), True)
    return Code(fn, helpers, frozenset(flat), consts, frozenset(f32), False)


_CONST_CALLS = {"uint64", "np.uint64", "np.int64", "np.float32", "np.float64"}


def _constant(e) -> bool:
    """Whether e is a literal number, a cast of one (uint64(8)), or a tuple of those."""
    if isinstance(e, ast.Constant):
        return type(e.value) in (int, float, bool)
    if isinstance(e, ast.Tuple):
        return all(_constant(x) for x in e.elts)
    if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub):
        return _constant(e.operand)
    if isinstance(e, ast.Call) and ast.unparse(e.func) in _CONST_CALLS and len(e.args) == 1 and not e.keywords:
        return _constant(e.args[0])
    return False


def _check_decorator(fn, generated):
    if len(fn.decorator_list) != 1:
        raise Unsupported("decorators")
    d = fn.decorator_list[0]
    if not (isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "njit"):
        raise Unsupported("not an @njit(...) function")
    for kw in d.keywords:
        if kw.arg is None:  # **_OPTS: the package kernels' options (cache, contract, numpy errors, nogil)
            if generated or not (isinstance(kw.value, ast.Name) and kw.value.id == "_OPTS"):
                raise Unsupported("decorator options")
            continue
        text = ast.unparse(kw.value)
        if kw.arg == "parallel" and text != "False":
            raise Unsupported("a parallel kernel")
        if kw.arg == "fastmath" and text not in ("{'contract'}", "False"):
            raise Unsupported(f"fastmath={text}")
        if (kw.arg == "inline" and text != "'always'") or (kw.arg == "error_model" and text != "'numpy'"):
            raise Unsupported(f"{kw.arg}={text}")


def _target_machine():
    global _TM
    if _TM is None:
        _TM = native_entries.host_target_machine()
    return _TM


def _kinds(types):
    out = []
    for t in types:
        if isinstance(t, ArrayType):
            out.append(("a", t.ndim, ITEMSIZE[t.dtype]))
        else:
            out.append({"b": "b", "i64": "i", "f64": "d"}[t])
    return out


def _recipe(types):
    return [f"a{t.ndim}" if isinstance(t, ArrayType) else {"b": "b", "i64": "i", "f64": "d"}[t] for t in types]


def _no_builtin_memset(text: str, sym: str) -> str:
    """The kernel's IR with its loops kept as loops: LLVM would make a zeroing loop a memset call,
    which costs more than the stores when the loop is a few elements long and runs many times
    (one_hot's (128, 10, 1) output: 1280 calls); fills that are long still vectorise."""
    head = f'define i32 @"{sym}"('
    start = text.index(head)
    end = text.index("\n{", start)
    return text[:end] + ' "no-builtin-memset" "no-builtin-memcpy"' + text[end:]


def compile_entry(code: Code, kernel_id: str, key: str, args, label: str):
    """(header, object code, b"") of kernel `code` (find_function) for these arguments: the
    thunk is in the same object code; Unsupported if kernel_ir does not translate it."""
    import llvmlite.binding as llvm

    types = kernel_ir.arg_types(args)
    h = hashlib.sha256(f"{kernel_id}|{key}".encode()).hexdigest()[:24]
    sym, thunk = f"graphc_direct_{h}", f"graphc_direct_thunk_{h}"
    module, ret = kernel_ir.build(code.fn, types, sym, code.helpers, code.flat, code.consts, code.f32)
    kinds = _kinds(types)
    with _LOCK:  # one LLVM context; llvmlite's passes are not documented as thread-safe
        tm = _target_machine()
        mod = llvm.parse_assembly(_no_builtin_memset(str(module), sym))
        mod.link_in(llvm.parse_assembly(kernel_thunk.thunk_ir(thunk, kinds)))  # one object for both
        mod.triple, mod.data_layout = tm.triple, str(tm.target_data)
        mod.verify()
        # a scan's driver (a generated module with its body kernels inlined) is unrolled, as Numba
        # does: best of 4 processes each, the LSTM step's two loops took 4.0 + 4.4 ms so, 4.1 + 4.6
        # without, 4.7 + 4.9 through Numba; the GRU's 3.35 + 4.5, 3.0-4.0 + 4.0-5.2, 3.3 + 3.9
        native_entries.optimise(mod, tm, unroll=code.generated and bool(code.helpers))
        obj = tm.emit_object(mod)
    header = {"symbol": sym, "thunk": thunk, "codes": kernel_thunk.codes(kinds), "args": _recipe(types)}
    header.update(ret=ret, unreachable=[], label=label, compiler="graphc")
    return header, obj, b""
