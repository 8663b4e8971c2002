"""Consecutive runtime steps that are native calls with fixed arguments, run as one native call.

A bound loop kernel, a matrix product or a product with its update (accumulate.py) over arrays
that stay the same call after call (planned buffers, variables) is one native function call:
a kernel's thunk or a cblas gemm (team.py's trampolines). A run of such steps is handed to
`graphc_chain_run`, a loop of machine code over a table of (function, block, arrays, ret), so the
step costs no Python between its kernels: measured here, a step's dispatch from Python (its run
method, the call's argument conversion) took 5-10 us inside a training step, where the products
before it have evicted the interpreter's own data from the caches, against 1-2 us timed alone.

BLAS's thread count is set (blas.use) once per chain: a chain holds products of one kind only,
small (one thread) or large (the tuner's count), as the products' own run functions choose; a
step whose arrays are fed or handed out (a call-time argument, an output pool) stays a Python
step. A failed part stops the chain there and raises its error, as its step would have.
"""

import ctypes

from graphc.backends.numba import blas, native
from graphc.backends.numba.native import NativeTask

__all__ = ["NativeStep", "NativeChain", "group"]

_IR = """
define i64 @graphc_chain_run(ptr %tab, i64 %n, ptr %status) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %next ]
  %more = icmp slt i64 %i, %n
  br i1 %more, label %body, label %ok
body:
  %base = mul i64 %i, 4
  %pf = getelementptr i64, ptr %tab, i64 %base
  %fn = load ptr, ptr %pf
  %pb = getelementptr i64, ptr %pf, i64 1
  %blk = load ptr, ptr %pb
  %pa = getelementptr i64, ptr %pf, i64 2
  %arr = load ptr, ptr %pa
  %pr = getelementptr i64, ptr %pf, i64 3
  %ret = load ptr, ptr %pr
  %st = call i32 %fn(ptr %blk, ptr %arr, ptr %ret)
  %zero = icmp eq i32 %st, 0
  %none = icmp eq i32 %st, -2
  %good = or i1 %zero, %none
  br i1 %good, label %next, label %fail
next:
  %i1 = add i64 %i, 1
  br label %loop
ok:
  ret i64 -1
fail:
  store i32 %st, ptr %status
  ret i64 %i
}
"""

_RUN = None  # the compiled loop; False where there is no native code for this machine


def _runner():
    global _RUN
    if _RUN is None:
        try:
            addr = native.add_ir(_IR, ["graphc_chain_run"], {})["graphc_chain_run"]
            _RUN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)(addr)
        except Exception:  # no LLVM target: every step runs from Python
            _RUN = False
    return _RUN or None


class NativeStep:
    """A step as one native call with fixed arguments: `task`, and the flops of the matrix
    product it computes (0: none), which say how many threads BLAS runs it on."""

    __slots__ = ("task", "flops")

    def __init__(self, task: NativeTask, flops: float = 0.0):
        self.task, self.flops = task, flops

    @property
    def small(self) -> bool | None:
        """None: no product; else whether it is a small one (one BLAS thread)."""
        return None if not self.flops else self.flops < blas.SMALL_FLOPS


class NativeChain:
    """Runtime steps run as one native call (`steps`: the Python steps they stand for)."""

    __slots__ = ("steps", "tasks", "small", "table", "status", "_addr")

    def __init__(self, steps: list, natives: list[NativeStep]):
        self.steps = steps
        self.tasks = [x.task for x in natives]
        kinds = {x.small for x in natives} - {None}
        self.small = kinds.pop() if kinds else None
        self.table = (ctypes.c_int64 * (4 * len(self.tasks)))()
        for i, t in enumerate(self.tasks):
            arrays = 0 if t.arrays is None else id(t.arrays)  # a tuple kept alive by the task
            self.table[4 * i : 4 * i + 4] = [t.fn, t.block, arrays, t.ret]
        self.status = ctypes.c_int32(0)
        self._addr = (ctypes.addressof(self.table), len(self.tasks), ctypes.addressof(self.status))

    def run(self, vals, ctx, first):
        if self.small is not None:
            blas.use(1 if self.small else blas.large)
        failed = _RUN(*self._addr)
        if failed >= 0:
            self.tasks[failed].finish(int(self.status.value))  # raises that step's error


def group(steps: list, fixed: dict, products: bool = True) -> list:
    """`steps` with each run of two or more consecutive native steps (their `native(fixed)`,
    `fixed`: the arrays bound for good, by value id) replaced by a NativeChain; `products`: False
    where the runtime runs its products on graphc's threads (they are not chained then)."""
    if _runner() is None:
        return list(steps)
    out: list = []
    run: list = []  # (step, NativeStep) of the chain being gathered

    def close():
        if len(run) >= 2:
            out.append(NativeChain([s for s, _ in run], [x for _, x in run]))
        else:
            out.extend(s for s, _ in run)
        run.clear()

    for st in steps:
        make = getattr(st, "native", None)
        got = make(fixed) if make is not None else None
        if got is not None and got.flops and not products:
            got = None
        if got is None:
            close()
            out.append(st)
            continue
        kinds = {x.small for _, x in run} - {None}
        if got.small is not None and kinds and got.small not in kinds:
            close()  # BLAS's thread count changes here: a chain of its own
        run.append((st, got))
    close()
    return out
