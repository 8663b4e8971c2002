"""LLVM IR for a kernel written in Numba's Python subset, made by graphc itself (no Numba).

The kernels graphc generates (codegen.py) and its plain package kernels (loops over arrays,
scalar arithmetic, `math` functions, helper functions of the same module) use a small part of
what Numba compiles. This module types that part as Numba does (kernel_types.py: int64
arithmetic, float32 meeting an int in float64, a variable has the unification of every value
assigned to it) and emits it with llvmlite's IR builder (expressions: kernel_exprs.py), in the
calling convention of Numba's native functions, so that one thunk (kernel_thunk.py) calls both:
`i32 f(ret*, excinfo*, args...)`, an array passed as (meminfo, parent, nitems, itemsize, data,
shape..., strides...). Helper functions are inlined at each call, typed by its arguments.

Anything outside the subset (prange, calls of unknown functions, exceptions, allocation)
raises Unsupported, and the kernel goes through Numba as before. Arithmetic follows
fastmath={'contract'} and error_model='numpy' (x/0 is inf or nan, integer x//0 is 0).
"""

import ast

from llvmlite import ir

from graphc.backends.numba.kernel_exprs import Expressions, KArray
from graphc.backends.numba.kernel_types import LL, MEM, ArrayType, Unsupported, arg_types, kind, unify

__all__ = ["Unsupported", "ArrayType", "arg_types", "build"]

_I64 = LL["i64"]
_PTR = ir.PointerType()
_ABI = {"b": LL["i8"], "i64": _I64, "f64": LL["f64"]}  # a scalar argument in the calling convention


class _Retype(Exception):
    """A variable met a wider type: emit again with the unified type from the start."""


class _Scope:
    """The variables of the kernel, or of one inlined call of a helper."""

    def __init__(self, key: str):
        self.key, self.vars, self.arrays = key, {}, {}


class _Frame:
    """Where `return` goes: the kernel's return, or the end of an inlined helper call."""

    def __init__(self, exit_block=None):
        self.exit, self.slots, self.types, self.tuple = exit_block, None, None, False


def build(fn: ast.FunctionDef, types: list, name: str, helpers=None, flat=(), consts=None, f32=()):
    """(an LLVM module defining `name`, the native function of kernel `fn` for argument `types`,
    its return kind: "none", "bool", "int64" or "float64"). helpers: the module's other
    functions, by name, inlined where called; flat: names of the intrinsic that views a
    C-contiguous array as 1-D; consts: the module's constant globals, by name, as expressions;
    f32: the module's names for np.float32 (`F = np.float32`)."""
    hints: dict = {}
    for _ in range(16):
        em = _Emitter(fn, types, name, hints, helpers or {}, frozenset(flat))
        em.consts = consts or {}
        em.float32_names = frozenset(f32)
        try:
            em.emit()
        except _Retype:
            continue
        return em.module, em.ret_kind()
    raise Unsupported("variable types do not settle")


class _Emitter(Expressions):
    def __init__(self, fn, types, name, hints, helpers, flat):
        self.fn, self.types, self.hints, self.helpers, self.flat_intrinsics = fn, types, hints, helpers, flat
        self.module = ir.Module(name=name)
        params = [_PTR, _PTR]
        for t in types:
            params += [_PTR, _PTR, _I64, _I64, _PTR] + [_I64] * (2 * t.ndim) if isinstance(t, ArrayType) else [_ABI[t]]
        self.func = ir.Function(self.module, ir.FunctionType(ir.IntType(32), params), name=name)
        self.func.attributes.add("nounwind")
        self.alloca_b = ir.IRBuilder(self.func.append_basic_block("entry"))
        self.b = ir.IRBuilder(self.func.append_basic_block("body"))
        self.scope = _Scope("kernel")
        self.frames = [_Frame()]
        self.loops: list = []  # (continue block, break block)
        self.ret_type = None
        self.calls = 0  # inlined helper calls so far (names their scopes)
        self._bind_args()

    def _bind_args(self):
        names = [a.arg for a in self.fn.args.args]
        if len(names) != len(self.types) or self.fn.args.vararg or self.fn.args.kwonlyargs or self.fn.args.defaults:
            raise Unsupported("argument form")
        self.retptr = self.func.args[0]
        k, a = 2, self.func.args
        for nm, t in zip(names, self.types):
            if isinstance(t, ArrayType):
                shape, strides = list(a[k + 5 : k + 5 + t.ndim]), list(a[k + 5 + t.ndim : k + 5 + 2 * t.ndim])
                self.scope.arrays[nm] = KArray(t, a[k + 4], shape, strides)
                k += 5 + 2 * t.ndim
            else:
                v = a[k]
                if t == "b":
                    v = self.b.icmp_unsigned("!=", v, ir.Constant(LL["i8"], 0))
                self.store_var(nm, v, t)
                k += 1

    def store_var(self, name, value, t):
        sc = self.scope
        if isinstance(t, ArrayType):
            if name in sc.vars:
                raise Unsupported(f"{name} holds an array and a scalar")
            sc.arrays[name] = value
            return
        if name in sc.arrays:
            raise Unsupported(f"array {name} reassigned")
        kind(t)
        key = (sc.key, name)
        got = sc.vars.get(name)
        if got is None:
            vt = self.hints.get(key, t)
            got = sc.vars[name] = (self.alloca_b.alloca(LL[vt], name=name), vt)
        ptr, vt = got
        if unify(vt, t) != vt:
            self.hints[key] = unify(vt, t)
            raise _Retype
        self.b.store(self.cast(value, t, vt), ptr)

    # -- statements ------------------------------------------------------------------------
    def emit(self):
        self.block(self.fn.body)
        if not self.b.block.is_terminated:
            self.do_return(None, None)
        self.alloca_b.branch(self.func.basic_blocks[1])

    def ret_kind(self) -> str:
        return {None: "none", "b": "bool", "i64": "int64", "f64": "float64"}[self.ret_type]

    def block(self, stmts):
        for s in stmts:
            if self.b.block.is_terminated:
                return  # code after return/continue/break is unreachable
            m = getattr(self, "s_" + type(s).__name__, None)
            if m is None:
                raise Unsupported(f"statement {type(s).__name__}")
            m(s)

    def s_Pass(self, s):
        pass

    def s_Expr(self, s):
        v = s.value
        if isinstance(v, ast.Constant) and isinstance(v.value, str):
            return  # a docstring
        if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in self.helpers:
            self.expr(v)  # a helper called for its effect
            return
        if isinstance(v, ast.Call) and ast.unparse(v.func) == "np.dot" and not v.keywords:
            from graphc.backends.numba import kernel_blas

            kernel_blas.emit_dot(self, v.args)  # a matrix product into its out argument: BLAS
            return
        raise Unsupported("expression statement")

    def s_Assign(self, s):
        if len(s.targets) != 1:
            raise Unsupported("chained assignment")
        target = s.targets[0]
        if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Slice):
            self._fill(target, s.value)
            return
        self.assign(target, *self.expr(s.value))

    def assign(self, target, v, t):
        if isinstance(target, ast.Tuple):
            if t != "tuple" or len(v) != len(target.elts):
                raise Unsupported("tuple assignment")
            for tg, (x, xt) in zip(target.elts, v):
                self.assign(tg, x, xt)
        elif isinstance(target, ast.Name):
            self.store_var(target.id, v, t)
        elif isinstance(target, ast.Subscript):
            kind(t)
            arr, ptr = self.element(target)
            self._store(arr, ptr, v, t)
        else:
            raise Unsupported("assignment target")

    def _store(self, arr, ptr, v, t):
        if not arr.type.writeable:
            raise Unsupported("store into a read-only array")
        dt = arr.type.dtype
        v = self.cast(v, t, dt)
        self.b.store(self.b.zext(v, LL["i8"]) if dt == "b" else v, ptr)

    def _fill(self, target, value):
        """`a[:] = scalar` for a 1-D array."""
        sl = target.slice
        arr = self.array(target.value)
        if arr.type.ndim != 1 or sl.lower is not None or sl.upper is not None or sl.step is not None:
            raise Unsupported("slice assignment")
        v, t = self.scalar(value)
        self._loop(ir.Constant(_I64, 0), arr.shape[0], 1, "i64", lambda i: self._store(arr, self._at(arr, i), v, t))

    def _at(self, arr, i):
        if arr.type.contiguous:
            return self.b.gep(arr.data, [i], source_etype=MEM.get(arr.type.dtype, LL[arr.type.dtype]))
        return self.b.gep(arr.data, [self.b.mul(i, arr.strides[0])], source_etype=LL["i8"])

    def s_AugAssign(self, s):
        op = ast.BinOp(left=ast.parse(ast.unparse(s.target), mode="eval").body, op=s.op, right=s.value)
        self.assign(s.target, *self.expr(op))

    def s_If(self, s):
        cond = self.truth(*self.scalar(s.test))
        then, other, done = (self.func.append_basic_block(n) for n in ("then", "else", "endif"))
        self.b.cbranch(cond, then, other)
        for blk, body in ((then, s.body), (other, s.orelse)):
            self.b.position_at_end(blk)
            self.block(body)
            if not self.b.block.is_terminated:
                self.b.branch(done)
        self.b.position_at_end(done)

    def s_For(self, s):
        if s.orelse or not isinstance(s.target, ast.Name):
            raise Unsupported("for loop form")
        it = s.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"):
            items, t = self.expr(it)  # over a tuple of values (made first, as Python does): unrolled
            if t != "tuple":
                raise Unsupported("a loop over something other than range or a tuple")
            end = self.func.append_basic_block("for.end")
            for v, vt in items:
                nxt = self.func.append_basic_block("for.next")
                self.store_var(s.target.id, v, vt)
                self.loops.append((nxt, end))
                self.block(s.body)
                self.loops.pop()
                if not self.b.block.is_terminated:
                    self.b.branch(nxt)
                self.b.position_at_end(nxt)
            self.b.branch(end)
            self.b.position_at_end(end)
            return
        if it.keywords or not 1 <= len(it.args) <= 3:
            raise Unsupported("range arguments")
        step = 1
        if len(it.args) == 3:
            c = it.args[2]
            if not (isinstance(c, ast.Constant) and type(c.value) is int and c.value != 0):
                raise Unsupported("range step")
            step = c.value
        bounds = [self.int_expr(a) for a in it.args[:2]]
        ts = {t for _, t in bounds}
        t = "u64" if ts == {"u64"} else "i64"
        if "u64" in ts and t != "u64":
            raise Unsupported("a range of uint64 and signed bounds")
        vals = [self.cast(v, vt, t) for v, vt in bounds]
        start, stop = (ir.Constant(_I64, 0), vals[0]) if len(vals) == 1 else vals

        def body(i):
            self.store_var(s.target.id, i, t)
            self.block(s.body)

        self._loop(start, stop, step, t, body)

    def _loop(self, start, stop, step, t, body):
        counter = self.alloca_b.alloca(_I64, name="range")
        self.b.store(start, counter)
        cond_b, body_b, step_b, end_b = (self.func.append_basic_block(n) for n in ("cond", "loop", "step", "done"))
        self.b.branch(cond_b)
        self.b.position_at_end(cond_b)
        i = self.b.load(counter, typ=_I64)
        cmp = self.b.icmp_unsigned if t == "u64" else self.b.icmp_signed
        self.b.cbranch(cmp("<" if step > 0 else ">", i, stop), body_b, end_b)
        self.b.position_at_end(body_b)
        self.loops.append((step_b, end_b))
        body(i)
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
        cond_b, body_b, end_b = (self.func.append_basic_block(n) for n in ("while", "while.body", "while.end"))
        self.b.branch(cond_b)
        self.b.position_at_end(cond_b)
        self.b.cbranch(self.truth(*self.scalar(s.test)), body_b, end_b)
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
            self.do_return(None, None)
        else:
            self.do_return(*self.expr(s.value))

    def do_return(self, v, t):
        frame = self.frames[-1]
        if frame.exit is not None:  # the end of an inlined helper call
            self._helper_return(frame, v, t)
            return
        if t is not None:
            kind(t)
            t2 = "i64" if t in ("i32", "u64") else "f64" if t == "f32" else t
            if self.ret_type not in (None, t2):
                raise Unsupported("return types differ")
            self.ret_type = t2
            v = self.cast(v, t, t2)
            self.b.store(self.b.zext(v, LL["i8"]) if t2 == "b" else v, self.retptr)
        elif self.ret_type is not None:
            raise Unsupported("a kernel that returns a value and None")
        self.b.ret(ir.Constant(ir.IntType(32), 0))

    # -- helpers, inlined ------------------------------------------------------------------
    def call_helper(self, name, args):
        fn = self.helpers[name]
        params = [a.arg for a in fn.args.args]
        if len(params) != len(args) or fn.args.vararg or fn.args.defaults or len(self.frames) > 8:
            raise Unsupported(f"call of {name}")
        self.calls += 1
        outer, scope = self.scope, _Scope(f"{name}#{self.calls}")
        frame = _Frame(self.func.append_basic_block(f"{name}.end"))
        self.scope = scope
        for p, (v, t) in zip(params, args):
            if t == "tuple":
                raise Unsupported("a tuple argument")
            self.store_var(p, v, t)
        self.frames.append(frame)
        self.block(fn.body)
        if not self.b.block.is_terminated:
            self._helper_return(frame, None, None)
        self.frames.pop()
        self.scope = outer
        self.b.position_at_end(frame.exit)
        if not frame.slots:  # returned nothing
            return None, "none"
        vals = [(self.b.load(p, typ=LL[t]), t) for p, t in zip(frame.slots, frame.types)]
        return (vals, "tuple") if frame.tuple else vals[0]

    def _helper_return(self, frame, v, t):
        items = [] if t is None else v if t == "tuple" else [(v, t)]
        if frame.slots is None:
            frame.tuple = t == "tuple"
            frame.types = []
            frame.slots = []
            for k, (_, it) in enumerate(items):
                key = (self.scope.key, f"<return {k}>")
                vt = self.hints.get(key, it)
                frame.types.append(vt)
                frame.slots.append(self.alloca_b.alloca(LL[vt]))
        if len(items) != len(frame.slots) or frame.tuple != (t == "tuple"):
            raise Unsupported("a helper whose returns differ")
        for k, ((x, xt), p, vt) in enumerate(zip(items, frame.slots, frame.types)):
            if unify(vt, xt) != vt:
                self.hints[(self.scope.key, f"<return {k}>")] = unify(vt, xt)
                raise _Retype
            self.b.store(self.cast(x, xt, vt), p)
        self.b.branch(frame.exit)
