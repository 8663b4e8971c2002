"""LLVM IR for a kernel written in Numba's Python subset, made by graphc itself (no Numba).

The kernels graphc generates (codegen.py) and its plain package kernels (loops over arrays,
scalar arithmetic, `math` functions) use a small part of what Numba compiles. This module
types that part as Numba does (scalar promotion: ints compute in int64, float32 meets an int
in float64, float32 with float32 stays float32; a variable has the unification of every value
assigned to it) and emits it with llvmlite's IR builder, in the calling convention of Numba's
native functions (numba_cache.thunk_ir calls both the same way): `i32 f(ret*, excinfo*, args...)`,
an array passed as (meminfo, parent, nitems, itemsize, data, shape..., strides...).

Anything outside the subset (prange, calls of other functions, tuples, exceptions, allocation)
raises Unsupported, and the kernel goes through Numba as before. Arithmetic follows
fastmath={'contract'} and error_model='numpy' (x/0 is inf or nan), as the generated kernels ask.
"""

import ast
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

__all__ = ["Unsupported", "ArrayType", "arg_types", "build"]


class Unsupported(Exception):
    """The kernel uses something this compiler does not translate (Numba compiles it instead)."""


# scalar types: "b" (bool), "i32", "i64", "f32", "f64"
_LL = {"b": ir.IntType(1), "i8": ir.IntType(8), "i32": ir.IntType(32), "i64": ir.IntType(64)}
_LL.update(f32=ir.FloatType(), f64=ir.DoubleType())
_DTYPES = {"bool": "b", "int32": "i32", "int64": "i64", "float32": "f32", "float64": "f64"}
_MEM = {"b": _LL["i8"]}  # how a scalar is stored in an array
_PTR = ir.PointerType()
_I64 = _LL["i64"]
_CONTRACT = ("contract",)


@dataclass(frozen=True)
class ArrayType:
    dtype: str
    ndim: int
    contiguous: bool  # C order: addressed from the shape, as Numba does for layout 'C'
    writeable: bool


def arg_types(args) -> list:
    """The type of each argument (an ndarray, or a Python int, bool or float); Unsupported otherwise."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            dt = _DTYPES.get(a.dtype.name)
            if dt is None or not a.dtype.isnative or not a.flags.aligned:
                raise Unsupported(f"array of {a.dtype}")
            out.append(ArrayType(dt, a.ndim, a.flags.c_contiguous, a.flags.writeable))
        elif isinstance(a, (bool, np.bool_)):
            out.append("b")
        elif isinstance(a, int) and -(1 << 63) <= a < (1 << 63):
            out.append("i64")
        elif isinstance(a, float):
            out.append("f64")
        else:
            raise Unsupported(f"argument of type {type(a).__name__}")
    return out


def _kind(t: str) -> int:
    return 0 if t == "b" else 1 if t[0] == "i" else 2


def promote(a: str, b: str) -> str:
    """The type of `a op b` for + - * (Numba's scalar rules)."""
    if _kind(a) == 2 or _kind(b) == 2:
        if _kind(a) == 2 and _kind(b) == 2:
            return "f64" if "f64" in (a, b) else "f32"
        f, other = (a, b) if _kind(a) == 2 else (b, a)
        return f if other == "b" else "f64"
    return "i64"


def unify(a: str, b: str) -> str:
    """The type of a variable (or max/min, a selection) holding values of types a and b."""
    return a if a == b else promote(a, b)


@dataclass
class _Array:
    type: ArrayType
    data: ir.Value
    shape: list
    strides: list


class _Retype(Exception):
    """A variable met a wider type: emit again with the unified type from the start."""


_MATH1 = {"exp": "llvm.exp", "log": "llvm.log", "sqrt": "llvm.sqrt", "sin": "llvm.sin", "cos": "llvm.cos"}
_MATH1.update(fabs="llvm.fabs", floor="llvm.floor", ceil="llvm.ceil")
_LIBM = {"tanh", "log1p", "erf", "expm1", "erfc", "atan", "asin", "acos", "sinh", "cosh", "tan", "log2", "log10"}
_CASTS = {"F": "f32", "float32": "f32", "float64": "f64", "int64": "i64", "int32": "i32", "bool_": "b"}
_CASTS.update({"float": "f64", "int": "i64", "bool": "b"})
_CMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def build(fn: ast.FunctionDef, types: list, name: str, helpers=None) -> tuple[ir.Module, str]:
    """An LLVM module defining `name`, the native function of kernel `fn` for argument `types`;
    returns (module, return kind: "none", "bool", "int64" or "float64")."""
    hints: dict = {}
    for _ in range(12):
        em = _Emitter(fn, types, name, hints)
        try:
            em.emit()
        except _Retype:
            continue
        return em.module, em.ret_kind()
    raise Unsupported("variable types do not settle")


class _Emitter:
    def __init__(self, fn, types, name, hints):
        self.fn, self.types, self.hints = fn, types, hints
        self.module = ir.Module(name=name)
        params = [_PTR, _PTR]
        for t in types:
            if isinstance(t, ArrayType):
                params += [_PTR, _PTR, _I64, _I64, _PTR] + [_I64] * (2 * t.ndim)
            else:
                params.append({"b": _LL["i8"], "i64": _I64, "f64": _LL["f64"]}[t])
        self.func = ir.Function(self.module, ir.FunctionType(ir.IntType(32), params), name=name)
        self.func.attributes.add("nounwind")
        entry = self.func.append_basic_block("entry")
        self.alloca_b = ir.IRBuilder(entry)
        body = self.func.append_basic_block("body")
        self.b = ir.IRBuilder(body)
        self.vars: dict = {}  # name -> (pointer, type)
        self.arrays: dict = {}
        self.loops: list = []  # (continue block, break block)
        self.ret_type = None
        self._bind_args()

    # -- arguments and variables -----------------------------------------------------------
    def _bind_args(self):
        names = [a.arg for a in self.fn.args.args]
        if len(names) != len(self.types) or self.fn.args.vararg or self.fn.args.kwonlyargs:
            raise Unsupported("argument count")
        self.retptr = self.func.args[0]
        k = 2
        for nm, t in zip(names, self.types):
            if isinstance(t, ArrayType):
                a = self.func.args
                shape = list(a[k + 5 : k + 5 + t.ndim])
                strides = list(a[k + 5 + t.ndim : k + 5 + 2 * t.ndim])
                self.arrays[nm] = _Array(t, a[k + 4], shape, strides)
                k += 5 + 2 * t.ndim
            else:
                v = self.func.args[k]
                if t == "b":
                    v = self.b.icmp_unsigned("!=", v, ir.Constant(_LL["i8"], 0))
                self._store_var(nm, v, t)
                k += 1

    def _store_var(self, name, value, t):
        if name in self.arrays:
            raise Unsupported(f"array {name} reassigned")
        got = self.vars.get(name)
        if got is None:
            vt = self.hints.get(name, t)
            if unify(vt, t) != vt:
                self.hints[name] = unify(vt, t)
                raise _Retype
            ptr = self.alloca_b.alloca(_LL[vt], name=name)
            got = self.vars[name] = (ptr, vt)
        ptr, vt = got
        if unify(vt, t) != vt:
            self.hints[name] = unify(vt, t)
            raise _Retype
        self.b.store(self.cast(value, t, vt), ptr)

    # -- emission --------------------------------------------------------------------------
    def emit(self):
        self.block(self.fn.body)
        if not self.b.block.is_terminated:
            self._return(None)
        self.alloca_b.branch(self.func.basic_blocks[1])

    def ret_kind(self) -> str:
        return {None: "none", "b": "bool", "i64": "int64", "f64": "float64"}[self.ret_type]

    def block(self, stmts):
        for s in stmts:
            if self.b.block.is_terminated:
                return  # code after return/continue/break is unreachable
            self.stmt(s)

    def stmt(self, s):
        m = getattr(self, "s_" + type(s).__name__, None)
        if m is None:
            raise Unsupported(f"statement {type(s).__name__}")
        m(s)

    def s_Pass(self, s):
        pass

    def s_Expr(self, s):
        if isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
            return  # a docstring
        raise Unsupported("expression statement")

    def s_Assign(self, s):
        if len(s.targets) != 1:
            raise Unsupported("chained assignment")
        self.assign(s.targets[0], s.value)

    def assign(self, target, value):
        if isinstance(target, ast.Tuple):
            vals = self.tuple_values(value, len(target.elts))
            for t, v in zip(target.elts, vals):
                self._assign_value(t, *v)
            return
        self._assign_value(target, *self.expr(value))

    def _assign_value(self, target, v, t):
        if isinstance(target, ast.Name):
            self._store_var(target.id, v, t)
        elif isinstance(target, ast.Subscript):
            arr, ptr = self.element(target)
            if not arr.type.writeable:
                raise Unsupported("store into a read-only array")
            dt = arr.type.dtype
            v = self.cast(v, t, dt)
            if dt == "b":
                v = self.b.zext(v, _LL["i8"])
            self.b.store(v, ptr)
        else:
            raise Unsupported("assignment target")

    def tuple_values(self, value, n):
        if isinstance(value, ast.Tuple) and len(value.elts) == n:
            return [self.expr(e) for e in value.elts]
        if isinstance(value, ast.Attribute) and value.attr == "shape":
            arr = self.array(value.value)
            if arr.type.ndim == n:
                return [(d, "i64") for d in arr.shape]
        raise Unsupported("tuple assignment")

    def s_AugAssign(self, s):
        op = ast.BinOp(left=_load_form(s.target), op=s.op, right=s.value)
        self._assign_value(s.target, *self.expr(op))

    def s_If(self, s):
        cond = self.truth(*self.expr(s.test))
        then = self.func.append_basic_block("then")
        other = self.func.append_basic_block("else")
        done = self.func.append_basic_block("endif")
        self.b.cbranch(cond, then, other)
        for blk, body in ((then, s.body), (other, s.orelse)):
            self.b.position_at_end(blk)
            self.block(body)
            if not self.b.block.is_terminated:
                self.b.branch(done)
        self.b.position_at_end(done)

    def s_For(self, s):
        it = s.iter
        if s.orelse or not isinstance(s.target, ast.Name) or not isinstance(it, ast.Call):
            raise Unsupported("for loop form")
        if not (isinstance(it.func, ast.Name) and it.func.id == "range") or it.keywords or not 1 <= len(it.args) <= 3:
            raise Unsupported("a loop over something other than range")
        step = 1
        if len(it.args) == 3:
            c = it.args[2]
            if not (isinstance(c, ast.Constant) and type(c.value) is int and c.value != 0):
                raise Unsupported("range step")
            step = c.value
        bounds = [self.cast(*self.int_expr(a), "i64") for a in it.args[:2]]
        start, stop = (ir.Constant(_I64, 0), bounds[0]) if len(bounds) == 1 else bounds
        counter = self.alloca_b.alloca(_I64, name="range")
        self.b.store(start, counter)
        cond_b = self.func.append_basic_block("for.cond")
        body_b = self.func.append_basic_block("for.body")
        step_b = self.func.append_basic_block("for.step")
        end_b = self.func.append_basic_block("for.end")
        self.b.branch(cond_b)
        self.b.position_at_end(cond_b)
        i = self.b.load(counter, typ=_I64)
        self.b.cbranch(self.b.icmp_signed("<" if step > 0 else ">", i, stop), body_b, end_b)
        self.b.position_at_end(body_b)
        self._store_var(s.target.id, i, "i64")
        self.loops.append((step_b, end_b))
        self.block(s.body)
        self.loops.pop()
        if not self.b.block.is_terminated:
            self.b.branch(step_b)
        self.b.position_at_end(step_b)
        self.b.store(self.b.add(self.b.load(counter, typ=_I64), ir.Constant(_I64, step)), counter)
        self.b.branch(cond_b)
        self.b.position_at_end(end_b)

    def s_While(self, s):
        if s.orelse:
            raise Unsupported("while/else")
        cond_b = self.func.append_basic_block("while.cond")
        body_b = self.func.append_basic_block("while.body")
        end_b = self.func.append_basic_block("while.end")
        self.b.branch(cond_b)
        self.b.position_at_end(cond_b)
        self.b.cbranch(self.truth(*self.expr(s.test)), body_b, end_b)
        self.b.position_at_end(body_b)
        self.loops.append((cond_b, end_b))
        self.block(s.body)
        self.loops.pop()
        if not self.b.block.is_terminated:
            self.b.branch(cond_b)
        self.b.position_at_end(end_b)

    def s_Continue(self, s):
        self.b.branch(self.loops[-1][0])

    def s_Break(self, s):
        self.b.branch(self.loops[-1][1])

    def s_Return(self, s):
        if s.value is None or (isinstance(s.value, ast.Constant) and s.value.value is None):
            self._return(None)
            return
        v, t = self.expr(s.value)
        t2 = "i64" if t == "i32" else "f64" if t == "f32" else t
        if self.ret_type is None:
            self.ret_type = t2
        elif self.ret_type != t2:
            raise Unsupported("return types differ")
        self._return(self.cast(v, t, t2))

    def _return(self, value):
        if value is not None:
            if self.ret_type == "b":
                value = self.b.zext(value, _LL["i8"])
            self.b.store(value, self.retptr)
        elif self.ret_type is not None:
            raise Unsupported("a kernel that returns a value and None")
        self.b.ret(ir.Constant(ir.IntType(32), 0))

    # -- expressions -----------------------------------------------------------------------
    def expr(self, e):
        m = getattr(self, "e_" + type(e).__name__, None)
        if m is None:
            raise Unsupported(f"expression {type(e).__name__}")
        return m(e)

    def int_expr(self, e):
        v, t = self.expr(e)
        if _kind(t) != 1:
            raise Unsupported("a non-integer index or bound")
        return v, t

    def e_Constant(self, e):
        v = e.value
        if type(v) is bool:
            return ir.Constant(_LL["b"], int(v)), "b"
        if type(v) is int:
            return ir.Constant(_I64, v), "i64"
        if type(v) is float:
            return ir.Constant(_LL["f64"], v), "f64"
        raise Unsupported(f"constant {v!r}")

    def e_Name(self, e):
        got = self.vars.get(e.id)
        if got is None:
            raise Unsupported(f"name {e.id}")
        ptr, t = got
        return self.b.load(ptr, typ=_LL[t]), t

    def e_Attribute(self, e):
        if isinstance(e.value, ast.Name) and e.value.id in ("np", "math"):
            consts = {"inf": np.inf, "nan": np.nan, "pi": np.pi, "e": np.e}
            if e.attr in consts:
                return ir.Constant(_LL["f64"], float(consts[e.attr])), "f64"
        if isinstance(e.value, ast.Name) and e.value.id in self.arrays:
            arr = self.arrays[e.value.id]
            if e.attr == "ndim":
                return ir.Constant(_I64, arr.type.ndim), "i64"
            if e.attr == "size":
                n = ir.Constant(_I64, 1)
                for d in arr.shape:
                    n = self.b.mul(n, d)
                return n, "i64"
        raise Unsupported(f"attribute {ast.unparse(e)}")

    def e_Subscript(self, e):
        v = e.value
        if isinstance(v, ast.Attribute) and v.attr == "shape":
            arr = self.array(v.value)
            if isinstance(e.slice, ast.Constant) and type(e.slice.value) is int:
                k = e.slice.value
                if -arr.type.ndim <= k < arr.type.ndim:
                    return arr.shape[k], "i64"
            raise Unsupported("shape index")
        arr, ptr = self.element(e)
        dt = arr.type.dtype
        val = self.b.load(ptr, typ=_MEM.get(dt, _LL[dt]))
        if dt == "b":
            val = self.b.icmp_unsigned("!=", val, ir.Constant(_LL["i8"], 0))
        return val, dt

    def array(self, e) -> _Array:
        if isinstance(e, ast.Name) and e.id in self.arrays:
            return self.arrays[e.id]
        raise Unsupported(f"not an array argument: {ast.unparse(e)}")

    def element(self, e):
        """(array, pointer to its element) of subscript expression e."""
        arr = self.array(e.value)
        idx = e.slice.elts if isinstance(e.slice, ast.Tuple) else [e.slice]
        if len(idx) != arr.type.ndim or any(isinstance(i, ast.Slice) for i in idx):
            raise Unsupported("an index that is not one integer per dimension")
        ivals = []
        for i, dim in zip(idx, arr.shape):
            v = self.cast(*self.int_expr(i), "i64")
            if not (isinstance(i, ast.Constant) and i.value >= 0):  # negative indices count from the end
                v = self.b.select(self.b.icmp_signed("<", v, ir.Constant(_I64, 0)), self.b.add(v, dim), v)
            ivals.append(v)
        dt = arr.type.dtype
        ety = _MEM.get(dt, _LL[dt])
        if arr.type.contiguous:
            off = ivals[0] if ivals else ir.Constant(_I64, 0)
            for v, dim in zip(ivals[1:], arr.shape[1:]):
                off = self.b.add(self.b.mul(off, dim), v)
            return arr, self.b.gep(arr.data, [off], source_etype=ety)
        off = ir.Constant(_I64, 0)
        for v, st in zip(ivals, arr.strides):
            off = self.b.add(off, self.b.mul(v, st))
        return arr, self.b.gep(arr.data, [off], source_etype=_LL["i8"])

    def e_UnaryOp(self, e):
        v, t = self.expr(e.operand)
        if isinstance(e.op, ast.Not):
            return self.b.not_(self.truth(v, t)), "b"
        if isinstance(e.op, ast.UAdd):
            return (self.cast(v, t, "i64"), "i64") if t == "b" else (v, t)
        if isinstance(e.op, ast.USub):
            if _kind(t) == 2:
                return self.b.fneg(v, flags=_CONTRACT), t
            v = self.cast(v, t, "i64")
            return self.b.neg(v), "i64"
        raise Unsupported("unary operator")

    def e_BinOp(self, e):
        (a, ta), (b, tb) = self.expr(e.left), self.expr(e.right)
        return self.binop(e.op, a, ta, b, tb)

    def binop(self, op, a, ta, b, tb):
        B = self.b
        if isinstance(op, ast.Div):
            t = promote(ta, tb) if _kind(ta) == 2 or _kind(tb) == 2 else "f64"
            return B.fdiv(self.cast(a, ta, t), self.cast(b, tb, t), flags=_CONTRACT), t
        if isinstance(op, ast.Pow):
            if _kind(ta) != 2:
                raise Unsupported("integer power")
            t = ta if _kind(tb) != 2 else promote(ta, tb)
            fn = self.module.declare_intrinsic("llvm.pow", [_LL[t]])
            return B.call(fn, [self.cast(a, ta, t), self.cast(b, tb, t)], fastmath=_CONTRACT), t
        t = promote(ta, tb)
        a, b = self.cast(a, ta, t), self.cast(b, tb, t)
        ops = {ast.Add: ("fadd", "add"), ast.Sub: ("fsub", "sub"), ast.Mult: ("fmul", "mul")}
        names = ops.get(type(op))
        if names is None:
            raise Unsupported(f"operator {type(op).__name__}")
        if _kind(t) == 2:
            return getattr(B, names[0])(a, b, flags=_CONTRACT), t
        return getattr(B, names[1])(a, b), t

    def e_Compare(self, e):
        if len(e.ops) != 1:
            raise Unsupported("chained comparison")
        (a, ta), (b, tb) = self.expr(e.left), self.expr(e.comparators[0])
        op = _CMP.get(type(e.ops[0]))
        if op is None:
            raise Unsupported("comparison operator")
        return self.compare(op, a, ta, b, tb), "b"

    def compare(self, op, a, ta, b, tb):
        t = unify(ta, tb)
        a, b = self.cast(a, ta, t), self.cast(b, tb, t)
        if _kind(t) == 2:
            return self.b.fcmp_unordered(op, a, b) if op == "!=" else self.b.fcmp_ordered(op, a, b)
        return self.b.icmp_signed(op, a, b)

    def e_BoolOp(self, e):
        """`and`/`or` of bools, short-circuit as in Python."""
        is_and = isinstance(e.op, ast.And)
        res = self.alloca_b.alloca(_LL["b"])
        done = self.func.append_basic_block("boolop.end")
        for k, x in enumerate(e.values):
            v, t = self.expr(x)
            if t != "b":
                raise Unsupported("and/or of non-bool values")
            self.b.store(v, res)
            if k < len(e.values) - 1:
                more = self.func.append_basic_block("boolop.next")
                self.b.cbranch(v, more, done) if is_and else self.b.cbranch(v, done, more)
                self.b.position_at_end(more)
        self.b.branch(done)
        self.b.position_at_end(done)
        return self.b.load(res, typ=_LL["b"]), "b"

    def e_IfExp(self, e):
        cond = self.truth(*self.expr(e.test))
        simple = all(isinstance(x, (ast.Name, ast.Constant)) for x in (e.body, e.orelse))
        if simple:  # both sides are values already: a select, as LLVM would make of the branches
            (a, ta), (b, tb) = self.expr(e.body), self.expr(e.orelse)
            t = unify(ta, tb)
            return self.b.select(cond, self.cast(a, ta, t), self.cast(b, tb, t)), t
        raise Unsupported("conditional expression with computed sides")

    def e_Call(self, e):
        if e.keywords:
            raise Unsupported("keyword arguments")
        f, args = e.func, e.args
        fname = None
        if isinstance(f, ast.Name):
            fname = f.id
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in ("np", "math"):
            fname = f"{f.value.id}.{f.attr}"
        if fname is None:
            raise Unsupported("call")
        short = fname.split(".")[-1]
        if short in _CASTS and (fname in ("F", "float", "int", "bool") or fname.startswith("np.")) and len(args) == 1:
            v, t = self.expr(args[0])
            return self.cast(v, t, _CASTS[short]), _CASTS[short]
        vals = [self.expr(a) for a in args]
        if fname in ("max", "min") and len(vals) >= 2:
            acc, at = vals[0]
            for v, t in vals[1:]:
                u = unify(at, t)
                acc, v = self.cast(acc, at, u), self.cast(v, t, u)
                acc, at = self.b.select(self.compare(">" if fname == "max" else "<", v, u, acc, u), v, acc), u
            return acc, at
        if fname == "abs" and len(vals) == 1:
            v, t = vals[0]
            if _kind(t) == 2:
                return self._intrinsic("llvm.fabs", v, t), t
            v = self.cast(v, t, "i64")
            return self.b.select(self.b.icmp_signed("<", v, ir.Constant(_I64, 0)), self.b.neg(v), v), "i64"
        if fname == "len" and len(args) == 1:
            return self.array(args[0]).shape[0], "i64"
        if fname == "_radd" and len(vals) == 2:
            (acc, at), (v, t) = vals
            if _kind(at) != 2:
                raise Unsupported("_radd of a non-float accumulator")
            return self.b.fadd(acc, self.cast(v, t, at), flags=("reassoc", "contract")), at
        if fname in ("_vexp", "_vtanh") and len(vals) == 1:
            from graphc.backends.numba import kernel_vmath

            x = self.cast(*vals[0], "f32")
            return (kernel_vmath.vexp if fname == "_vexp" else kernel_vmath.vtanh)(self, x), "f32"
        if fname.startswith("math.") and len(vals) == 1:
            v, t = vals[0]
            if _kind(t) != 2:
                v, t = self.cast(v, t, "f64"), "f64"
            if short in ("isfinite", "isnan", "isinf"):
                return self._classify(short, v, t), "b"
            if short in _MATH1:
                return self._intrinsic(_MATH1[short], v, t), t
            if short in _LIBM:
                name = short + ("f" if t == "f32" else "")
                fn = self.module.globals.get(name) or ir.Function(
                    self.module, ir.FunctionType(_LL[t], [_LL[t]]), name=name
                )
                return self.b.call(fn, [v]), t
        raise Unsupported(f"call of {fname}")

    def _intrinsic(self, name, v, t):
        fn = self.module.declare_intrinsic(name, [_LL[t]])
        return self.b.call(fn, [v], fastmath=_CONTRACT)

    def _classify(self, what, v, t):
        if what == "isnan":
            return self.b.fcmp_unordered("uno", v, v)
        a = self._intrinsic("llvm.fabs", v, t)
        inf = ir.Constant(_LL[t], float("inf"))
        return self.b.fcmp_ordered("<" if what == "isfinite" else "==", a, inf)

    # -- conversions -----------------------------------------------------------------------
    def truth(self, v, t):
        return self.cast(v, t, "b")

    def cast(self, v, src: str, dst: str):
        if src == dst:
            return v
        B, ks, kd = self.b, _kind(src), _kind(dst)
        if kd == 0:
            if ks == 2:
                return B.fcmp_unordered("!=", v, ir.Constant(_LL[src], 0.0))
            return B.icmp_unsigned("!=", v, ir.Constant(_LL[src], 0))
        if ks == 0:
            return B.zext(v, _LL[dst]) if kd == 1 else B.uitofp(v, _LL[dst])
        if ks == 1 and kd == 1:
            wide = _LL[src].width < _LL[dst].width
            return B.sext(v, _LL[dst]) if wide else B.trunc(v, _LL[dst])
        if ks == 1:
            return B.sitofp(v, _LL[dst])
        if kd == 1:
            return B.fptosi(v, _LL[dst])
        return B.fpext(v, _LL[dst]) if src == "f32" else B.fptrunc(v, _LL[dst])


def _load_form(target):
    """The expression reading an assignment target (for `x += y`)."""
    t = ast.parse(ast.unparse(target), mode="eval").body
    return t
