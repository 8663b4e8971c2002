"""Consecutive runtime steps that are native calls, run as one native call.

A bound loop kernel, a matrix product or a product with its update (accumulate.py) over arrays
that stay the same call after call (planned buffers, variables) is one native function call:
a kernel's thunk or a cblas gemm (team.py's trampolines). A run of such steps is handed to
`graphc_chain_series`, a loop of machine code over a table of (function, block, arrays, ret), so the
step costs no Python between its kernels: measured here, a step's dispatch from Python (its run
method, the call's argument conversion) took 5-10 us inside a training step, where the products
before it have evicted the interpreter's own data from the caches, against 1-2 us timed alone.

BLAS's thread count is what the products' own run functions choose: one thread for a small
product, the tuner's count for a large one. A chain sets it (blas.use) for its first product and,
where small and large ones alternate, switches it natively between them (`graphc_chain_threads`
calls each library's setter; with a BLAS whose setter is not native code, a chain holds products
of one kind only). A step that reads a fed array (or a view of one that a Python step before the
chain made) joins with a task made for the call's arrays (`Refresher`); a step that writes an
output pool's array stays a Python step. A label kernel joins through `checked`, which fails
where it counted labels out of range. A failed part stops the chain there and raises its
error, as its step would have.
"""

import ctypes

from graphc.backends.numba import blas, native
from graphc.backends.numba.native import NativeTask

__all__ = ["NativeStep", "NativeChain", "Refresher", "group", "native_step", "series", "checked"]

_THREADS_IR = """
define i32 @graphc_chain_threads(ptr %blk, ptr %arr, ptr %ret) {
entry:
  %n = load i64, ptr %blk
  %n32 = trunc i64 %n to i32
  %pk = getelementptr i64, ptr %blk, i64 1
  %k = load i64, ptr %pk
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %body ]
  %more = icmp slt i64 %i, %k
  br i1 %more, label %body, label %done
body:
  %at = add i64 %i, 2
  %pf = getelementptr i64, ptr %blk, i64 %at
  %fn = load ptr, ptr %pf
  call void %fn(i32 %n32)
  %i1 = add i64 %i, 1
  br label %loop
done:
  ret i32 0
}
"""

_SERIES_IR = """
define i32 @graphc_chain_series(ptr %blk, ptr %arr, ptr %ret) {
entry:
  %n = load i64, ptr %blk
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %next ]
  %more = icmp slt i64 %i, %n
  br i1 %more, label %body, label %ok
body:
  %row = mul i64 %i, 4
  %at = add i64 %row, 2
  %pf = getelementptr i64, ptr %blk, i64 %at
  %fn = load ptr, ptr %pf
  %pb = getelementptr i64, ptr %pf, i64 1
  %b = load ptr, ptr %pb
  %pa = getelementptr i64, ptr %pf, i64 2
  %a = load ptr, ptr %pa
  %pr = getelementptr i64, ptr %pf, i64 3
  %r = load ptr, ptr %pr
  %st = call i32 %fn(ptr %b, ptr %a, ptr %r)
  %zero = icmp eq i32 %st, 0
  %none = icmp eq i32 %st, -2
  %good = or i1 %zero, %none
  br i1 %good, label %next, label %fail
next:
  %i1 = add i64 %i, 1
  br label %loop
ok:
  ret i32 0
fail:
  %pi = getelementptr i64, ptr %blk, i64 1
  store i64 %i, ptr %pi
  ret i32 %st
}
"""

_CHECKED_IR = """
define i32 @graphc_chain_checked(ptr %blk, ptr %arr, ptr %ret) {
entry:
  %fn = load ptr, ptr %blk
  %pb = getelementptr i64, ptr %blk, i64 1
  %inner = load ptr, ptr %pb
  %st = call i32 %fn(ptr %inner, ptr %arr, ptr %ret)
  %zero = icmp eq i32 %st, 0
  %none = icmp eq i32 %st, -2
  %good = or i1 %zero, %none
  br i1 %good, label %look, label %out
look:
  %v = load i64, ptr %ret
  %bad = icmp ne i64 %v, 0
  br i1 %bad, label %report, label %out
report:
  ret i32 -3
out:
  ret i32 %st
}
"""

REPORTED = -3  # graphc_chain_checked's status: the kernel ran and returned something other than 0

_RUN = None  # graphc_chain_series, callable; False where there is no native code for this machine
_THREADS = 0  # the address of graphc_chain_threads: block = [count, k, k setters' addresses]
_SERIES = 0  # the address of graphc_chain_series: block = [count, failed part, count table rows]
_CHECKED = 0  # the address of graphc_chain_checked: block = [function, its block]


def _runner():
    global _RUN, _THREADS, _SERIES, _CHECKED
    if _RUN is None:
        try:
            names = ["graphc_chain_threads", "graphc_chain_series", "graphc_chain_checked"]
            got = native.add_ir(_THREADS_IR + _SERIES_IR + _CHECKED_IR, names, {})
            _THREADS, _SERIES, _CHECKED = (got[name] for name in names)
            ptr = ctypes.c_void_p
            _RUN = ctypes.CFUNCTYPE(ctypes.c_int32, ptr, ptr, ptr)(_SERIES)
        except Exception:  # no LLVM target: every step runs from Python
            _RUN = False
    return _RUN or None


def series(tasks: list) -> NativeTask | None:
    """`tasks` (NativeTasks) run one after another as one NativeTask, stopping at the first that
    fails (its error raised by the series' finish); None where there is no native code here or
    a task is None. A worker of the team runs it as it would one task."""
    if _runner() is None or any(t is None for t in tasks):
        return None
    blk = _table([_row(t) for t in tasks])

    def finish(status):
        if status not in (0, -2):
            tasks[blk[1]].finish(status)

    return NativeTask(_SERIES, ctypes.addressof(blk), None, 0, (blk, tasks), finish)


def checked(task: NativeTask | None, report) -> NativeTask | None:
    """`task`, a kernel's that returns an integer or a bool (written into its `ret`, a buffer
    zeroed when the task was made, so its other bytes read 0), as a NativeTask that fails where
    that value is not 0, so a chain stops there (the label kernels'
    count of labels out of range); its finish then calls report(), which raises the error. None
    where task is None or there is no native code here."""
    if task is None or _runner() is None:
        return None
    blk = (ctypes.c_int64 * 2)(task.fn, task.block)

    def finish(status):
        if status == REPORTED:
            report()
        task.finish(status)

    return NativeTask(_CHECKED, ctypes.addressof(blk), task.arrays, task.ret, (blk, task), finish)


class NativeStep:
    """A step as one native call: `task` (None: made at each call by `refresh`), and the flops of
    the matrix product it computes (0: none), which say how many threads BLAS runs it on."""

    __slots__ = ("task", "flops", "refresh")

    def __init__(self, task: NativeTask | None, flops: float = 0.0, refresh=None):
        self.task, self.flops, self.refresh = task, flops, refresh

    @property
    def small(self) -> bool | None:
        """None: no product; else whether it is a small one (one BLAS thread)."""
        return None if not self.flops else self.flops < blas.SMALL_FLOPS


class Refresher:
    """A step's task for this call's arrays: `make(*arrays)` of the values `ids` (bound ones from
    `fixed`, the others from the call's values: fed arrays, output pools, views of feeds), made
    again only when one of them is another array than at the last call. The last call's arrays
    stay referenced by the task until then."""

    __slots__ = ("make", "ids", "fixed", "seen", "task")

    def __init__(self, make, ids: list, fixed: dict):
        self.make, self.ids, self.fixed = make, ids, fixed
        self.seen: tuple | None = None
        self.task = None

    def __call__(self, vals) -> NativeTask | None:
        fixed = self.fixed
        arrays = tuple(fixed[i] if i in fixed else vals.get(i) for i in self.ids)
        seen = self.seen
        if seen is not None and all(a is b for a, b in zip(arrays, seen)):
            return self.task
        if any(a is None for a in arrays):
            return None
        self.task = self.make(*arrays)
        self.seen = arrays if self.task is not None else None
        return self.task


def native_step(make, ids: list, fixed: dict, flops: float = 0.0) -> NativeStep | None:
    """A step's NativeStep: its task made now where the arrays of `ids` are all bound for good,
    else a Refresher that makes it at each call with other arrays (`make(*arrays)`: a NativeTask
    or None)."""
    if all(i in fixed for i in ids):
        task = make(*[fixed[i] for i in ids])
        return None if task is None else NativeStep(task, flops)
    return NativeStep(None, flops, Refresher(make, ids, fixed))


class NativeChain:
    """Runtime steps run as one native call (`steps`: the Python steps they stand for). Where
    small and large products alternate, `setters` (blas.native_setters) switch BLAS's thread
    count between them natively: 1 for a small one, the tuner's count for a large one."""

    __slots__ = (
        "steps",
        "tasks",
        "small",
        "table",
        "setters",
        "large",
        "blocks",
        "kinds",
        "final",
        "dynamic",
        "python",
        "_addr",
    )

    def __init__(self, steps: list, natives: list[NativeStep], setters: tuple | None = None):
        self.steps, self.setters = steps, setters
        self.tasks: list = []  # per table entry: the step's task, or None for a switch of the count
        self.kinds: list = []  # per table entry: the kind of product BLAS is set for then
        self.large: list = []  # the switches' blocks whose count is the tuner's, set at each call
        self.blocks: list = []  # every switch's block (the table points into them)
        self.dynamic: list = []  # (table row, Refresher) of the steps whose arrays come with a call
        kind = self.small = next((x.small for x in natives if x.small is not None), None)
        rows = []
        for x in natives:
            if x.small is not None and x.small != kind:
                assert setters is not None, "products of two kinds in a chain need native setters"
                blk = (ctypes.c_int64 * (2 + len(setters)))(1, len(setters), *setters)
                if not x.small:
                    self.large.append(blk)
                kind = x.small
                rows.append((_THREADS, ctypes.addressof(blk), 0, 0))
                self.tasks.append(None)
                self.kinds.append(kind)
                self.blocks.append(blk)
            if x.refresh is not None:  # its row is written at each call that makes a new task
                self.dynamic.append((len(rows), x.refresh))
            rows.append(_row(x.task))
            self.tasks.append(x.task)
            self.kinds.append(kind)
        self.final = kind
        self.python = False  # a step's task could not be made for a call's arrays: run from Python
        self.table = _table(rows)
        self._addr = ctypes.addressof(self.table)

    def run(self, vals, ctx, first):
        switches = bool(self.blocks)
        if self.python or (switches and blas.native_setters() != self.setters):  # BLAS libraries came or went
            for st in self.steps:
                st.run(vals, ctx, first)
            return
        for row, refresh in self.dynamic:
            task = refresh(vals)
            if task is None:  # this call's arrays do not take a native call: the steps, from now on
                self.python = True
                self.run(vals, ctx, first)
                return
            if task is not self.tasks[row]:
                self.tasks[row] = task
                self.table[2 + 4 * row : 6 + 4 * row] = list(_row(task))
        if self.small is not None:
            big = blas.large
            for blk in self.large:
                blk[0] = big
            blas.use(1 if self.small else big)
        status = _RUN(self._addr, None, None)
        failed = -1 if status in (0, -2) else self.table[1]
        if switches:  # the count the native switches left
            kind = self.final if failed < 0 else self.kinds[failed]
            blas.set_natively(1 if kind else blas.large)
        if failed >= 0:
            self.tasks[failed].finish(status)  # raises that step's error


def _table(rows: list):
    """graphc_chain_series's block for these rows: their count, the failed row's slot, the rows."""
    table = (ctypes.c_int64 * (2 + 4 * len(rows)))(len(rows), -1)
    for i, row in enumerate(rows):
        table[2 + 4 * i : 6 + 4 * i] = list(row)
    return table


def _row(task: NativeTask | None) -> tuple:
    """A task's table row: function, block, arrays (a tuple the task keeps alive), ret."""
    if task is None:  # made at the first call
        return (0, 0, 0, 0)
    return (task.fn, task.block, 0 if task.arrays is None else id(task.arrays), task.ret)


def group(steps: list, fixed: dict, products: bool = True, fed=frozenset(), pooled=frozenset()) -> list:
    """`steps` with each run of two or more consecutive native steps (their `native(fixed)`,
    `fixed`: the arrays bound for good, by value id) replaced by a NativeChain; `products`: False
    where the runtime runs its products on graphc's threads (they are not chained then). Small
    and large products share a chain where BLAS's count can be set natively, else they split it.
    A step whose arrays come with a call joins a chain where each of them is there when the chain
    starts: a fed array (`fed`) or a value a Python step before it made, but never an output
    pool's array (`pooled`): a task holding it would keep the pool from handing it out again."""
    if _runner() is None:
        return list(steps)
    setters = blas.native_setters() if products else None
    ready = set(fed) - set(pooled)
    out: list = []
    run: list = []  # (step, NativeStep) of the chain being gathered

    def close():
        if len(run) >= 2:
            out.append(NativeChain([s for s, _ in run], [x for _, x in run], setters))
        else:
            out.extend(s for s, _ in run)
        run.clear()

    for st in steps:
        make = getattr(st, "native", None)
        got = make(fixed) if make is not None else None
        if got is not None and got.flops and not products:
            got = None
        if got is not None and got.refresh is not None and not all(i in fixed or i in ready for i in got.refresh.ids):
            got = None
        if got is None:
            close()
            out.append(st)
            node = getattr(st, "node", None)
            if node is not None and node.id not in pooled:  # the value it makes, there for later chains
                ready.add(node.id)
            continue
        kinds = {x.small for _, x in run} - {None}
        if setters is None and got.small is not None and kinds and got.small not in kinds:
            close()  # BLAS's thread count changes here and only Python can set it: a chain of its own
        run.append((st, got))
    close()
    return out
