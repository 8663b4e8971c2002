"""Expressions of graphc's own kernel compiler (kernel_ir.py): each gives (value, type).

A scalar's type is a kernel_types name; an array's is its ArrayType (its value a KArray); a
tuple (a helper's result, `x.shape`) is ("tuple", [(value, type), ...]) as type "tuple".
"""

import ast
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from graphc.backends.numba.kernel_types import ITEMSIZE, LL, MEM, ArrayType, Unsupported, cast, kind, promote, unify

_I64 = LL["i64"]
_CONTRACT = ("contract",)
_MATH1 = {"exp": "llvm.exp", "log": "llvm.log", "sqrt": "llvm.sqrt", "sin": "llvm.sin", "cos": "llvm.cos"}
_MATH1.update(fabs="llvm.fabs", floor="llvm.floor", ceil="llvm.ceil")
_LIBM = {"tanh", "log1p", "erf", "expm1", "erfc", "atan", "asin", "acos", "sinh", "cosh", "tan", "log2", "log10"}
_CASTS = {"float32": "f32", "float64": "f64", "int64": "i64", "int32": "i32", "bool_": "b"}
_CASTS.update({"uint64": "u64", "float": "f64", "int": "i64", "bool": "b"})
_CMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_ARITH = {ast.Add: ("fadd", "add"), ast.Sub: ("fsub", "sub"), ast.Mult: ("fmul", "mul")}
_BITS = {ast.BitAnd: "and_", ast.BitOr: "or_", ast.BitXor: "xor"}


@dataclass
class KArray:
    type: ArrayType
    data: ir.Value
    shape: list
    strides: list


class Expressions:
    """The expression half of kernel_ir's emitter (needs self.b, self.module, self.scope, ...)."""

    def expr(self, e):
        m = getattr(self, "e_" + type(e).__name__, None)
        if m is None:
            raise Unsupported(f"expression {type(e).__name__}")
        return m(e)

    def scalar(self, e):
        v, t = self.expr(e)
        kind(t)  # Unsupported for arrays and tuples
        return v, t

    def int_expr(self, e):
        v, t = self.scalar(e)
        if kind(t) != 1:
            raise Unsupported("a non-integer index or bound")
        return v, t

    def cast(self, v, src, dst):
        return cast(self.b, v, src, dst)

    def truth(self, v, t):
        return self.cast(v, t, "b")

    def e_Constant(self, e):
        v = e.value
        if type(v) is bool:
            return ir.Constant(LL["b"], int(v)), "b"
        if type(v) is int:
            return ir.Constant(_I64, v), "i64"
        if type(v) is float:
            return ir.Constant(LL["f64"], v), "f64"
        raise Unsupported(f"constant {v!r}")

    def e_Name(self, e):
        arr = self.scope.arrays.get(e.id)
        if arr is not None:
            return arr, arr.type
        got = self.scope.vars.get(e.id)
        if got is None:
            if e.id in self.consts:
                return self.expr(self.consts[e.id])
            raise Unsupported(f"name {e.id}")
        ptr, t = got
        return self.b.load(ptr, typ=LL[t]), t

    def e_Tuple(self, e):
        return [self.expr(x) for x in e.elts], "tuple"

    def e_Attribute(self, e):
        if isinstance(e.value, ast.Name) and e.value.id in ("np", "math"):
            consts = {"inf": np.inf, "nan": np.nan, "pi": np.pi, "e": np.e}
            if e.attr in consts:
                return ir.Constant(LL["f64"], float(consts[e.attr])), "f64"
        arr = self.array(e.value)
        if e.attr == "ndim":
            return ir.Constant(_I64, arr.type.ndim), "i64"
        if e.attr == "size":
            n = ir.Constant(_I64, 1)
            for d in arr.shape:
                n = self.b.mul(n, d)
            return n, "i64"
        if e.attr == "shape":
            return [(d, "i64") for d in arr.shape], "tuple"
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
        val = self.b.load(ptr, typ=MEM.get(dt, LL[dt]))
        if dt == "b":
            val = self.b.icmp_unsigned("!=", val, ir.Constant(LL["i8"], 0))
        return val, dt

    def array(self, e) -> KArray:
        v, t = self.expr(e)
        if not isinstance(t, ArrayType):
            raise Unsupported(f"not an array: {ast.unparse(e)}")
        return v

    def element(self, e):
        """(array, pointer to its element) of subscript expression e."""
        arr = self.array(e.value)
        idx = e.slice.elts if isinstance(e.slice, ast.Tuple) else [e.slice]
        if len(idx) != arr.type.ndim or any(isinstance(i, ast.Slice) for i in idx):
            raise Unsupported("an index that is not one integer per dimension")
        ivals = []
        for i, dim in zip(idx, arr.shape):
            v, t = self.int_expr(i)
            v = self.cast(v, t, "i64")
            if t != "u64" and not (isinstance(i, ast.Constant) and i.value >= 0):  # negative: from the end
                v = self.b.select(self.b.icmp_signed("<", v, ir.Constant(_I64, 0)), self.b.add(v, dim), v)
            ivals.append(v)
        dt = arr.type.dtype
        ety = MEM.get(dt, LL[dt])
        if arr.type.contiguous:
            off = ivals[0] if ivals else ir.Constant(_I64, 0)
            for v, dim in zip(ivals[1:], arr.shape[1:]):
                off = self.b.add(self.b.mul(off, dim), v)
            return arr, self.b.gep(arr.data, [off], source_etype=ety)
        off = ir.Constant(_I64, 0)
        for v, st in zip(ivals, arr.strides):
            off = self.b.add(off, self.b.mul(v, st))
        return arr, self.b.gep(arr.data, [off], source_etype=LL["i8"])

    def e_UnaryOp(self, e):
        v, t = self.scalar(e.operand)
        if isinstance(e.op, ast.Not):
            return self.b.not_(self.truth(v, t)), "b"
        if isinstance(e.op, ast.UAdd):
            return (self.cast(v, t, "i64"), "i64") if t == "b" else (v, t)
        if isinstance(e.op, ast.USub):
            if kind(t) == 2:
                return self.b.fneg(v, flags=_CONTRACT), t
            t2 = "u64" if t == "u64" else "i64"
            return self.b.neg(self.cast(v, t, t2)), t2
        raise Unsupported("unary operator")

    def e_BinOp(self, e):
        (a, ta), (b, tb) = self.scalar(e.left), self.scalar(e.right)
        return self.binop(e.op, a, ta, b, tb)

    def binop(self, op, a, ta, b, tb):
        B = self.b
        floats = kind(ta) == 2 or kind(tb) == 2
        if isinstance(op, ast.Div):
            t = promote(ta, tb) if floats else "f64"
            return B.fdiv(self.cast(a, ta, t), self.cast(b, tb, t), flags=_CONTRACT), t
        if isinstance(op, ast.Pow):
            if not floats:
                raise Unsupported("integer power")
            t = ta if kind(tb) != 2 else promote(ta, tb)
            fn = self.module.declare_intrinsic("llvm.pow", [LL[t]])
            return B.call(fn, [self.cast(a, ta, t), self.cast(b, tb, t)], fastmath=_CONTRACT), t
        if type(op) in _BITS or isinstance(op, (ast.LShift, ast.RShift)):
            if floats:
                raise Unsupported("a bitwise operator on floats")
            t = "b" if ta == tb == "b" and type(op) in _BITS else promote(ta, tb)
            a, b = self.cast(a, ta, t), self.cast(b, tb, t)
            if type(op) in _BITS:
                return getattr(B, _BITS[type(op)])(a, b), t
            if isinstance(op, ast.LShift):
                return B.shl(a, b), t
            return (B.lshr(a, b) if t == "u64" else B.ashr(a, b)), t
        if isinstance(op, (ast.FloorDiv, ast.Mod)):
            if floats:
                raise Unsupported("floor division of floats")
            return self._floor_div(isinstance(op, ast.Mod), a, ta, b, tb)
        names = _ARITH.get(type(op))
        if names is None:
            raise Unsupported(f"operator {type(op).__name__}")
        t = promote(ta, tb)
        a, b = self.cast(a, ta, t), self.cast(b, tb, t)
        if kind(t) == 2:
            return getattr(B, names[0])(a, b, flags=_CONTRACT), t
        return getattr(B, names[1])(a, b), t

    def _floor_div(self, mod, a, ta, b, tb):
        """Python's a // b or a % b (rounding toward -inf); 0 for a zero divisor (error_model numpy)."""
        B, t = self.b, promote(ta, tb)
        a, b = self.cast(a, ta, t), self.cast(b, tb, t)
        zero, one = ir.Constant(_I64, 0), ir.Constant(_I64, 1)
        bad = B.icmp_unsigned("==", b, zero)
        safe = B.select(bad, one, b)
        if t == "u64":
            r = B.urem(a, safe) if mod else B.udiv(a, safe)
            return B.select(bad, zero, r), t
        q, r = B.sdiv(a, safe), B.srem(a, safe)
        fix = B.and_(
            B.icmp_signed("!=", r, zero),
            B.icmp_signed("!=", B.icmp_signed("<", r, zero), B.icmp_signed("<", safe, zero)),
        )
        out = B.select(fix, B.add(r, safe), r) if mod else B.select(fix, B.sub(q, one), q)
        return B.select(bad, zero, out), t

    def e_Compare(self, e):
        vals = [self.scalar(x) for x in [e.left, *e.comparators]]
        res = None
        for op, (a, ta), (b, tb) in zip(e.ops, vals, vals[1:]):
            sym = _CMP.get(type(op))
            if sym is None:
                raise Unsupported("comparison operator")
            c = self.compare(sym, a, ta, b, tb)
            res = c if res is None else self.b.and_(res, c)  # a chain of pure values: all compared
        return res, "b"

    def compare(self, op, a, ta, b, tb):
        t = promote(ta, tb) if ta != tb else ta
        a, b = self.cast(a, ta, t), self.cast(b, tb, t)
        if kind(t) == 2:
            return self.b.fcmp_unordered(op, a, b) if op == "!=" else self.b.fcmp_ordered(op, a, b)
        return (self.b.icmp_unsigned if t in ("u64", "b") else self.b.icmp_signed)(op, a, b)

    def e_BoolOp(self, e):
        """`and`/`or` of bools, short-circuit as in Python."""
        is_and = isinstance(e.op, ast.And)
        res = self.alloca_b.alloca(LL["b"])
        done = self.func.append_basic_block("boolop.end")
        for k, x in enumerate(e.values):
            v, t = self.scalar(x)
            if t != "b":
                raise Unsupported("and/or of non-bool values")
            self.b.store(v, res)
            if k < len(e.values) - 1:
                more = self.func.append_basic_block("boolop.next")
                self.b.cbranch(v, more, done) if is_and else self.b.cbranch(v, done, more)
                self.b.position_at_end(more)
        self.b.branch(done)
        self.b.position_at_end(done)
        return self.b.load(res, typ=LL["b"]), "b"

    def e_IfExp(self, e):
        cond = self.truth(*self.scalar(e.test))
        if self._speculable(e.body) and self._speculable(e.orelse):  # both sides computed, then a select
            (a, ta), (b, tb) = self.scalar(e.body), self.scalar(e.orelse)
            t = unify(ta, tb)
            return self.b.select(cond, self.cast(a, ta, t), self.cast(b, tb, t)), t
        blocks = [self.func.append_basic_block(n) for n in ("ifexp.then", "ifexp.else", "ifexp.end")]
        self.b.cbranch(cond, blocks[0], blocks[1])
        sides = []
        for blk, x in zip(blocks, (e.body, e.orelse)):
            self.b.position_at_end(blk)
            v, t = self.scalar(x)
            sides.append((self.b.block, v, t))
        t = unify(sides[0][2], sides[1][2])
        phi_in = []
        for blk, v, st in sides:
            self.b.position_at_end(blk)
            phi_in.append((self.cast(v, st, t), self.b.block))
            self.b.branch(blocks[2])
        self.b.position_at_end(blocks[2])
        phi = self.b.phi(LL[t])
        for v, blk in phi_in:
            phi.add_incoming(v, blk)
        return phi, t

    def _speculable(self, e) -> bool:
        """Whether e may be computed where Python would not: arithmetic on values, no loads (an
        index that is out of range on the other side) and no helper calls."""
        for x in ast.walk(e):
            if isinstance(x, (ast.Subscript, ast.BoolOp, ast.IfExp, ast.Tuple)):
                return False
            if isinstance(x, ast.Call):
                f = ast.unparse(x.func)
                if f in self.helpers or f in self.flat_intrinsics or f.startswith("_"):
                    return False
        return True

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
        if fname in self.helpers and fname not in self.scope.vars:
            return self.call_helper(fname, [self.expr(a) for a in args])
        if fname in self.flat_intrinsics and len(args) == 1:
            arr = self.array(args[0])
            if not arr.type.contiguous:
                raise Unsupported("_flat of a non-contiguous array")
            n = ir.Constant(_I64, 1)
            for d in arr.shape:
                n = self.b.mul(n, d)
            flat = ArrayType(arr.type.dtype, 1, True, arr.type.writeable)
            return KArray(flat, arr.data, [n], [ir.Constant(_I64, ITEMSIZE[flat.dtype])]), flat
        if fname in self.float32_names and len(args) == 1:
            v, t = self.scalar(args[0])
            return self.cast(v, t, "f32"), "f32"
        if short in _CASTS and (fname in ("float", "int", "bool", "uint64") or fname.startswith("np.")):
            if len(args) == 1:
                v, t = self.scalar(args[0])
                return self.cast(v, t, _CASTS[short]), _CASTS[short]
        if fname not in ("max", "min", "abs", "_radd", "_vexp", "_vtanh") and not fname.startswith("math."):
            raise Unsupported(f"call of {fname}")
        vals = [self.scalar(a) for a in args]
        if fname in ("max", "min") and len(vals) >= 2:
            acc, at = vals[0]
            for v, t in vals[1:]:
                u = unify(at, t)
                acc, v = self.cast(acc, at, u), self.cast(v, t, u)
                acc, at = self.b.select(self.compare(">" if fname == "max" else "<", v, u, acc, u), v, acc), u
            return acc, at
        if fname == "abs" and len(vals) == 1:
            v, t = vals[0]
            if kind(t) == 2:
                return self.intrinsic("llvm.fabs", v, t), t
            v = self.cast(v, t, "i64")
            return self.b.select(self.b.icmp_signed("<", v, ir.Constant(_I64, 0)), self.b.neg(v), v), "i64"
        if fname == "_radd" and len(vals) == 2:
            (acc, at), (v, t) = vals
            if kind(at) != 2:
                raise Unsupported("_radd of a non-float accumulator")
            return self.b.fadd(acc, self.cast(v, t, at), flags=("reassoc", "contract")), at
        if fname in ("_vexp", "_vtanh") and len(vals) == 1:
            from graphc.backends.numba import kernel_vmath

            x = self.cast(*vals[0], "f32")
            return (kernel_vmath.vexp if fname == "_vexp" else kernel_vmath.vtanh)(self, x), "f32"
        if fname.startswith("math.") and len(vals) == 1:
            return self._math(short, *vals[0])
        raise Unsupported(f"call of {fname}")

    def _math(self, name, v, t):
        if kind(t) != 2:
            v, t = self.cast(v, t, "f64"), "f64"
        if name == "isnan":
            return self.b.fcmp_unordered("uno", v, v), "b"
        if name in ("isfinite", "isinf"):
            a, inf = self.intrinsic("llvm.fabs", v, t), ir.Constant(LL[t], float("inf"))
            return self.b.fcmp_ordered("<" if name == "isfinite" else "==", a, inf), "b"
        if name in _MATH1:
            return self.intrinsic(_MATH1[name], v, t), t
        if name in _LIBM:
            sym = name + ("f" if t == "f32" else "")
            fn = self.module.globals.get(sym) or ir.Function(self.module, ir.FunctionType(LL[t], [LL[t]]), name=sym)
            return self.b.call(fn, [v]), t
        raise Unsupported(f"math.{name}")

    def intrinsic(self, name, v, t):
        fn = self.module.declare_intrinsic(name, [LL[t]])
        return self.b.call(fn, [v], fastmath=_CONTRACT)

    _intrinsic = intrinsic  # the name kernel_vmath's emitters call
