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

from graphc.backends.numba import kernel_ir, kernel_thunk, native
from graphc.backends.numba.kernel_ir import ArrayType, Unsupported

__all__ = ["enabled", "find_function", "compile_entry", "Unsupported"]

_LOCK = threading.Lock()
_TM = None
_FUNCS: dict = {}  # (source hash, name) -> FunctionDef, or the Unsupported met


def enabled() -> bool:
    return os.environ.get("GRAPHC_DIRECT_KERNELS", "1") != "0" and native.enabled()


def find_function(source: str, name: str, generated: bool) -> ast.FunctionDef:
    """Function `name` of module text `source`, if its decorator asks for what kernel_ir gives:
    `njit` without parallel, with fastmath at most {'contract'}; Unsupported otherwise."""
    key = (hashlib.sha256(source.encode()).hexdigest(), name)
    got = _FUNCS.get(key)
    if got is None:
        got = _FUNCS[key] = _find(source, name, generated)
    if isinstance(got, Unsupported):
        raise got
    return got


def _find(source, name, generated):
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return Unsupported(f"source does not parse: {e}")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            try:
                _check_decorator(node, generated)
            except Unsupported as e:
                return e
            return node
    return Unsupported(f"no function {name}")


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
        if kw.arg == "inline" or (kw.arg == "error_model" and text != "'numpy'"):
            raise Unsupported(f"{kw.arg}={text}")


def _target_machine():
    global _TM
    if _TM is None:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        cpu, feats = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
        _TM = llvm.Target.from_default_triple().create_target_machine(
            cpu=cpu, features=feats, opt=3, codemodel="jitdefault"
        )
    return _TM


def _kinds(types):
    out = []
    for t in types:
        if isinstance(t, ArrayType):
            out.append(("a", t.ndim, {"b": 1, "i32": 4, "i64": 8, "f32": 4, "f64": 8}[t.dtype]))
        else:
            out.append({"b": "b", "i64": "i", "f64": "d"}[t])
    return out


def _recipe(types):
    return [f"a{t.ndim}" if isinstance(t, ArrayType) else {"b": "b", "i64": "i", "f64": "d"}[t] for t in types]


def compile_entry(fn: ast.FunctionDef, kernel_id: str, key: str, args, label: str):
    """(header, object code, thunk object code) of kernel `fn` for these arguments; Unsupported
    if kernel_ir does not translate it."""
    import llvmlite.binding as llvm

    types = kernel_ir.arg_types(args)
    h = hashlib.sha256(f"{kernel_id}|{key}".encode()).hexdigest()[:24]
    sym, thunk = f"graphc_direct_{h}", f"graphc_direct_thunk_{h}"
    module, ret = kernel_ir.build(fn, types, sym)
    with _LOCK:  # one LLVM context; llvmlite's passes are not documented as thread-safe
        tm = _target_machine()
        mod = llvm.parse_assembly(str(module))
        mod.triple, mod.data_layout = tm.triple, str(tm.target_data)
        mod.verify()
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pto.loop_vectorization = pto.slp_vectorization = True
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        obj = tm.emit_object(mod)
        tmod = llvm.parse_assembly(kernel_thunk.thunk_ir(thunk, _kinds(types)))
        tmod.triple = tm.triple
        thunk_obj = tm.emit_object(tmod)
    kinds = _kinds(types)
    header = {"symbol": sym, "thunk": thunk, "codes": kernel_thunk.codes(kinds), "args": _recipe(types)}
    header.update(ret=ret, unreachable=[], label=label, compiler="graphc")
    return header, obj, thunk_obj
