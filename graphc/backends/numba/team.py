"""A team of native workers: the parts of a batch split handed over in about a microsecond.

Handing a part to a Python thread costs 100-190 us on a 2-core VM (measured: the worker's
wake-up, then the GIL passing between the two threads, each a sleep and an inter-processor
interrupt), against a part of 1-3 ms: 0.7 ms of the LSTM step, 1.7 ms of the GRU's. Here a
part that is native code (a `native.NativeTask`: a natively loaded kernel's thunk call, or a cblas
gemm) is run by a worker that never takes the GIL: each worker thread sits in a loop of
machine code (`graphc_team_work`, written below as LLVM IR) that polls its slot, calls the
task's function, marks it done and polls again, yielding the core between polls. After
IDLE_S without a task it returns to Python and sleeps on a condition until the next post. The
caller waits for its parts by polling too (`graphc_team_wait`), so neither side sleeps while a
split step runs.

One caller at a time uses the team (a lock taken without waiting): another thread's split then
runs through the thread pool (batch_split.in_parallel). The slots' stores are published with
release stores and read with acquire loads. A task's status is checked by its caller after
every part is done; a forked child builds a team of its own.
"""

import atexit
import ctypes
import os
import threading
import time

import numpy as np

from graphc.backends.numba import native
from graphc.backends.numba.native import NativeTask

__all__ = ["NativeTask", "gemm_task", "team", "STATS"]

IDLE_S = 0.003  # a worker polls this long for its next task, then sleeps (a training step's gaps are shorter)
_SLOT = 16  # int64 words per worker's slot (128 bytes: slots of two workers never share a cache line)
TICKET, DONE, FN, BLOCK, ARRAYS, RET, STATUS, STOP, IDLE, WANTED, PINNED = range(11)
STATS = {"tasks": 0, "sleeps": 0}

_IR = """
declare i32 @sched_yield()
declare i32 @clock_gettime(i32, ptr)

define i64 @graphc_team_now() {
  %ts = alloca [2 x i64]
  %r = call i32 @clock_gettime(i32 1, ptr %ts)
  %s = load i64, ptr %ts
  %pn = getelementptr i64, ptr %ts, i64 1
  %n = load i64, ptr %pn
  %ms = mul i64 %s, 1000000000
  %t = add i64 %ms, %n
  ret i64 %t
}

define void @graphc_team_post(ptr %st, i64 %fn, i64 %blk, i64 %arr, i64 %ret) {
  %pf = getelementptr i64, ptr %st, i64 2
  store i64 %fn, ptr %pf
  %pb = getelementptr i64, ptr %st, i64 3
  store i64 %blk, ptr %pb
  %pa = getelementptr i64, ptr %st, i64 4
  store i64 %arr, ptr %pa
  %pr = getelementptr i64, ptr %st, i64 5
  store i64 %ret, ptr %pr
  %t = load i64, ptr %st
  %t1 = add i64 %t, 1
  store atomic i64 %t1, ptr %st release, align 8
  ret void
}

; true once `limit` ns have passed since `since`; else it yields the core first (a poll's pause)
define i1 @graphc_team_pause(i64 %since, i64 %limit) {
  %now = call i64 @graphc_team_now()
  %el = sub i64 %now, %since
  %over = icmp ugt i64 %el, %limit
  br i1 %over, label %up, label %yield
yield:
  %y = call i32 @sched_yield()
  ret i1 0
up:
  ret i1 1
}

define i64 @graphc_team_wait(ptr %st, i64 %ticket, i64 %limit) {
entry:
  %pd = getelementptr i64, ptr %st, i64 1
  %t0 = call i64 @graphc_team_now()
  br label %poll
poll:
  %d = load atomic i64, ptr %pd acquire, align 8
  %done = icmp eq i64 %d, %ticket
  br i1 %done, label %yes, label %more
more:
  %over = call i1 @graphc_team_pause(i64 %t0, i64 %limit)
  br i1 %over, label %no, label %poll
yes:
  ret i64 1
no:
  ret i64 0
}

define i64 @graphc_team_work(ptr %st) {
entry:
  %pd = getelementptr i64, ptr %st, i64 1
  %seen0 = load atomic i64, ptr %pd acquire, align 8
  %pl = getelementptr i64, ptr %st, i64 8
  %limit = load i64, ptr %pl
  %ps = getelementptr i64, ptr %st, i64 7
  %t0 = call i64 @graphc_team_now()
  br label %poll
poll:
  %seen = phi i64 [ %seen0, %entry ], [ %tk, %run ], [ %seen, %clock ]
  %since = phi i64 [ %t0, %entry ], [ %tr, %run ], [ %since, %clock ]
  %tk = load atomic i64, ptr %st acquire, align 8
  %new = icmp ne i64 %tk, %seen
  br i1 %new, label %where, label %idle
where:
  %pw = getelementptr i64, ptr %st, i64 9
  %want = load i64, ptr %pw
  %pp = getelementptr i64, ptr %st, i64 10
  %pin = load i64, ptr %pp
  %moved = icmp ne i64 %want, %pin
  br i1 %moved, label %move, label %run
move:
  ret i64 2
run:
  %pf = getelementptr i64, ptr %st, i64 2
  %fn = load ptr, ptr %pf
  %pb = getelementptr i64, ptr %st, i64 3
  %blk = load ptr, ptr %pb
  %pa = getelementptr i64, ptr %st, i64 4
  %arr = load ptr, ptr %pa
  %pr = getelementptr i64, ptr %st, i64 5
  %ret = load ptr, ptr %pr
  %status = call i32 %fn(ptr %blk, ptr %arr, ptr %ret)
  %st64 = sext i32 %status to i64
  %pst = getelementptr i64, ptr %st, i64 6
  store i64 %st64, ptr %pst
  store atomic i64 %tk, ptr %pd release, align 8
  %tr = call i64 @graphc_team_now()
  br label %poll
idle:
  %stop = load atomic i64, ptr %ps monotonic, align 8
  %halt = icmp ne i64 %stop, 0
  br i1 %halt, label %exit, label %clock
clock:
  %over = call i1 @graphc_team_pause(i64 %since, i64 %limit)
  br i1 %over, label %rest, label %poll
rest:
  ret i64 0
exit:
  ret i64 1
}
"""


def _gemm_ir(name: str, real: str, bits: int) -> str:
    """The thunk-shaped trampoline `i32 name(i64* block, ptr, ptr)` that calls the cblas gemm at
    block[0] with the arguments of block[1:] (enums and sizes as i64, alpha and beta as doubles)."""
    n = f"i{bits}"
    lines = [f"define i32 @{name}(ptr %blk, ptr %arr, ptr %ret) {{"]
    vals = []
    for k, kind in enumerate(["e", "e", "e", "n", "n", "n", "f", "p", "n", "p", "n", "f", "p", "n"], start=1):
        lines.append(f"  %p{k} = getelementptr i64, ptr %blk, i64 {k}")
        if kind == "f":
            lines += [f"  %d{k} = load double, ptr %p{k}"]
            if real == "float":
                lines.append(f"  %v{k} = fptrunc double %d{k} to float")
            else:
                lines.append(f"  %v{k} = fadd double %d{k}, 0.0")
            vals.append(f"{real} %v{k}")
        elif kind == "p":
            lines.append(f"  %v{k} = load ptr, ptr %p{k}")
            vals.append(f"ptr %v{k}")
        else:
            lines.append(f"  %w{k} = load i64, ptr %p{k}")
            width = "i32" if kind == "e" else n
            lines.append(f"  %v{k} = trunc i64 %w{k} to {width}" if width != "i64" else f"  %v{k} = add i64 %w{k}, 0")
            vals.append(f"{width} %v{k}")
    lines += ["  %fn = load ptr, ptr %blk", f"  call void %fn({', '.join(vals)})", "  ret i32 0", "}"]
    return "\n".join(lines) + "\n"


def _fill_ir(name: str, gemm: str) -> str:
    """`name`: the rows of C (block[13], ldc block[14], block[4] rows of block[5]) set to the row
    at block[15] (elements of block[16] bytes), then trampoline `gemm` on the same block: a bias
    row broadcast into a block of the product just before its gemm adds into it (beta = 1)."""
    return f"""
define i32 @{name}(ptr %blk, ptr %arr, ptr %ret) {{
entry:
  %pm = getelementptr i64, ptr %blk, i64 4
  %m = load i64, ptr %pm
  %pn = getelementptr i64, ptr %blk, i64 5
  %n = load i64, ptr %pn
  %pc = getelementptr i64, ptr %blk, i64 13
  %c = load ptr, ptr %pc
  %pl = getelementptr i64, ptr %blk, i64 14
  %ldc = load i64, ptr %pl
  %pr = getelementptr i64, ptr %blk, i64 15
  %row = load ptr, ptr %pr
  %ps = getelementptr i64, ptr %blk, i64 16
  %size = load i64, ptr %ps
  %bytes = mul i64 %n, %size
  %pitch = mul i64 %ldc, %size
  %any = icmp sgt i64 %m, 0
  br i1 %any, label %loop, label %done
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
  %off = mul i64 %i, %pitch
  %dst = getelementptr i8, ptr %c, i64 %off
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %row, i64 %bytes, i1 false)
  %i1 = add i64 %i, 1
  %more = icmp slt i64 %i1, %m
  br i1 %more, label %loop, label %done
done:
  %r = call i32 @{gemm}(ptr %blk, ptr %arr, ptr %ret)
  ret i32 %r
}}
"""


_CODE = None  # {symbol: address} once compiled; False where it cannot be
_CODE_LOCK = threading.Lock()


def _code() -> dict | None:
    global _CODE
    if _CODE is None:
        with _CODE_LOCK:
            if _CODE is None:
                names = ["graphc_team_now", "graphc_team_post", "graphc_team_wait", "graphc_team_work"]
                text = _IR
                for real, r in (("float", "s"), ("double", "d")):
                    for bits in (32, 64):
                        text += _gemm_ir(f"graphc_team_{r}gemm{bits}", real, bits)
                        names.append(f"graphc_team_{r}gemm{bits}")
                text += "\ndeclare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)\n"  # the fills' row copies
                for r in "sd":
                    for bits in (32, 64):
                        text += _fill_ir(f"graphc_team_fill_{r}gemm{bits}", f"graphc_team_{r}gemm{bits}")
                        names.append(f"graphc_team_fill_{r}gemm{bits}")
                try:
                    libc = {n: _libc_address(n) for n in ("sched_yield", "clock_gettime")}
                    _CODE = native.add_ir(text, names, libc)
                except Exception:  # no LLVM target for this machine: the thread pool does the work
                    _CODE = False
    return _CODE or None


def _libc_address(name: str) -> int:
    return ctypes.cast(getattr(ctypes.CDLL(None), name), ctypes.c_void_p).value


def _ok(status: int) -> None:
    if status != 0:
        raise native.KernelFailed(f"a graphc gemm part returned status {status}")


def gemm_task(address: int, bits: int, dtype: str, args: tuple, fill: tuple | None = None) -> NativeTask | None:
    """The cblas gemm at `address` (integers of `bits`) called with `args` (cblas_?gemm's 14, the
    operands as addresses) as a NativeTask; `fill` (row address, itemsize): C's rows are set to
    that row first. None where the team's code is not available."""
    code = _code()
    if code is None:
        return None
    blk = (ctypes.c_int64 * 17)()
    blk[0] = address
    for k, v in enumerate([*args, *(fill or (0, 0))], start=1):
        if isinstance(v, float):
            blk[k] = int(np.float64(v).view(np.int64))
        else:
            blk[k] = int(v)
    fn = code[f"graphc_team_{'fill_' if fill else ''}{'s' if dtype == 'f32' else 'd'}gemm{bits}"]
    return NativeTask(fn, ctypes.addressof(blk), None, 0, blk, _ok)


class Team:
    """The native workers of this process (see the module doc): `run(tasks)` runs tasks[0] in
    the calling thread and the others on the workers, one each; False (nothing run) where the
    team is in use by another thread or has too few workers."""

    def __init__(self, cpus: list, code: dict):
        self.code = code
        self.slots = np.zeros((max(1, len(cpus) - 1), _SLOT), np.int64)
        self.slots[:, IDLE] = int(IDLE_S * 1e9)  # nanoseconds of CLOCK_MONOTONIC
        self.wait_ns = int(0.01 * 1e9)  # the caller polls this long, then sleeps a little between polls
        self.lock = threading.Lock()
        self.conds = [threading.Condition() for _ in range(len(self.slots))]
        self.asleep = [False] * len(self.slots)
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self._post = ctypes.CFUNCTYPE(None, ptr, i64, i64, i64, i64)(code["graphc_team_post"])
        self._wait = ctypes.CFUNCTYPE(i64, ptr, i64, i64)(code["graphc_team_wait"])
        work = ctypes.CFUNCTYPE(i64, ptr)(code["graphc_team_work"])
        self.cpus = cpus
        self.threads = []
        for i in range(len(self.slots)):
            cpu = cpus[len(cpus) - 1 - i]
            self.slots[i, WANTED] = self.slots[i, PINNED] = cpu
            th = threading.Thread(target=self._worker, args=(i, work, cpu), name=f"graphc-team-{i}", daemon=True)
            th.start()
            self.threads.append(th)

    def _slot(self, i: int) -> int:
        return self.slots.ctypes.data + i * _SLOT * 8

    @staticmethod
    def _pin(cpu: int) -> None:
        if cpu >= 0 and hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:
                pass

    def _worker(self, i: int, work, cpu: int) -> None:
        self._pin(cpu)
        st, addr, cond = self.slots[i], self._slot(i), self.conds[i]
        while True:
            got = work(addr)  # polls and runs tasks (the GIL released)
            if got == 1:  # stopped
                return
            if got == 2:  # asked to move off the caller's core first
                self._pin(int(st[WANTED]))
                st[PINNED] = st[WANTED]
                continue
            with cond:  # idle for IDLE_S: sleep until a task is posted
                STATS["sleeps"] += 1
                self.asleep[i] = True
                while st[TICKET] == st[DONE] and not st[STOP]:
                    cond.wait()
                self.asleep[i] = False

    def run(self, tasks: list) -> bool:
        """tasks[0] (any callable) here, tasks[1:] (NativeTasks) on the workers; True once all
        are done (the first error raised then), False if the team cannot take them now."""
        mine, rest = tasks[0], tasks[1:]
        if len(rest) > len(self.slots) or not self.lock.acquire(blocking=False):
            return False
        try:
            tickets = []
            here = _getcpu()
            for i, t in enumerate(rest):
                addr = self._slot(i)
                if here >= 0 and self.slots[i, WANTED] == here:  # a worker on the caller's core moves
                    self.slots[i, WANTED] = next((c for c in self.cpus if c != here), here)
                arrays = 0 if t.arrays is None else id(t.arrays)
                with self.conds[i]:  # the worker's sleep test is made under this lock
                    self._post(addr, t.fn, t.block, arrays, t.ret)
                    if self.asleep[i]:
                        self.conds[i].notify()
                tickets.append(int(self.slots[i, TICKET]))
            STATS["tasks"] += len(rest)
            err = None
            try:
                mine()
            except BaseException as e:  # the workers still use the buffers: wait for them first
                err = e
            for i, ticket in enumerate(tickets):
                addr = self._slot(i)
                while True:
                    try:
                        if self._wait(addr, ticket, self.wait_ns):
                            break
                        time.sleep(0.0002)  # a long part: poll less often
                    except BaseException as e:  # an interrupt: the part still runs on these buffers
                        err = err or e
            if err is not None:
                raise err
            for i, t in enumerate(rest):
                t.finish(int(self.slots[i, STATUS]))
            return True
        finally:
            self.lock.release()

    def stop(self) -> None:
        """Stop the workers and wait for them to leave their loops (at exit: before the slots'
        memory can be freed under a worker still polling it)."""
        self.slots[:, STOP] = 1
        for c in self.conds:
            with c:
                c.notify()
        for th in self.threads:
            th.join(timeout=1.0)


try:
    _GETCPU = ctypes.CDLL(None).sched_getcpu
except (OSError, AttributeError):
    _GETCPU = None


def _getcpu() -> int:
    """The core this thread runs on now (-1 where unknown)."""
    return _GETCPU() if _GETCPU is not None else -1


_TEAM: Team | None = None
_PID = None
_TEAM_LOCK = threading.Lock()


def team() -> Team | None:
    """This process's team over the cores it may use, made on first use; None where there is
    one core, no native code, or GRAPHC_TEAM=0 (the thread pool then runs every split)."""
    global _TEAM, _PID
    if os.environ.get("GRAPHC_TEAM", "1") == "0":
        return None
    if _TEAM is not None and _PID == os.getpid():
        return _TEAM
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if len(cpus) < 2:
        return None
    code = _code()
    if code is None:
        return None
    with _TEAM_LOCK:
        if _TEAM is None or _PID != os.getpid():  # a forked child: the parent's threads are not here
            _TEAM, _PID = Team(cpus, code), os.getpid()
            atexit.register(_TEAM.stop)
    return _TEAM
