"""CUDA source for fused elementwise and reduction kernels, from the same op templates as the
CPU loops (graphc.backends.templates; the loop facts in graphc.backends.loopgen).

A kernel's arguments are as the CPU kernel's: the collapsed loop sizes, the inputs viewed at
the collapsed rank (size 1 along broadcast dims), the materialised outputs. Each thread takes
elements in a grid-stride loop, so one launch shape serves every size.

A reduction is a block-level tree in shared memory: one block per output element (striding
over the outputs), its threads each fold a strided share of the reduced elements (the fused
producers computed on the way, materialised ones stored), then halve the block's partials
log2(threads) times. No warp shuffles (the simulator has none). float32 sums accumulate in
float64, as on the CPU.

The source is a pure function of the group and the launch shape (threads per block of a
reduction); compiled kernels are kept per source for the process.
"""

from graphc.backends import templates
from graphc.backends.loopgen import LoopSpec, ReduceSpec

__all__ = ["elementwise_source", "reduce_source", "load"]

HEADER = """# graphc generated CUDA kernel: {label} (source is a pure function of the fused group)
import math
import numpy as np
from numba import cuda

F = np.float32


@cuda.jit
"""

_ACC = {"float32": "np.float32", "float64": "np.float64", "int32": "np.int32", "int64": "np.int64", "bool": "np.bool_"}


def _unflatten(flat: str, names: list[str], sizes: list[str], indent: str) -> list[str]:
    """Lines splitting the C-order flat index `flat` over `sizes` into `names`."""
    if not names:
        return []
    lines = [f"{indent}r_ = {flat}"]
    for name, size in zip(reversed(names[1:]), reversed(sizes[1:])):
        lines.append(f"{indent}{name} = r_ % {size}")
        lines.append(f"{indent}r_ = r_ // {size}")
    lines.append(f"{indent}{names[0]} = r_")
    return lines


def _body(spec: LoopSpec, idx: list[str], indent: str):
    def load_(k, mask):
        return f"a{k}[{', '.join('0' if b else i for b, i in zip(mask, idx))}]"

    def store(k):
        return f"o{k}[{', '.join(idx)}]"

    return templates.body_lines(spec, load_, store, indent)


def elementwise_source(spec: LoopSpec, label: str) -> str:
    """An elementwise kernel over the (collapsed) loop shape, one element per grid-stride step."""
    r = spec.rank
    sizes = [f"n{d}" for d in range(r)]
    args = sizes + [f"a{k}" for k in range(len(spec.inputs))] + [f"o{k}" for k in range(len(spec.outputs))]
    idx = [f"i{d}" for d in range(r)]
    lines = [f"def kernel({', '.join(args)}):", f"    total = {' * '.join(sizes)}"]
    lines.append("    for flat in range(cuda.grid(1), total, cuda.gridsize(1)):")
    lines += _unflatten("flat", idx, sizes, "        ")
    body, _ = _body(spec, idx, "        ")
    lines += body
    return HEADER.format(label=label) + "\n".join(lines) + "\n"


def reduce_source(spec: LoopSpec, anchor, rs: ReduceSpec, reduced: tuple, label: str, threads: int) -> str:
    """A reduction over the reduced (collapsed) dims `reduced[d]`, one block per output element.

    Arguments: sizes, inputs, materialised producers, then the result with kept dims (reduced
    dims of size 1). `threads` (a power of two) is the block size the kernel is launched with.
    """
    r = spec.rank
    dt = anchor.dtype
    cast = templates.CAST[dt]
    wide = rs.wide and dt == "float32"
    acc_t = "np.float64" if wide else _ACC[dt]
    init = "0.0" if wide else templates.literal(rs.init(dt), dt)
    sizes = [f"n{d}" for d in range(r)]
    kept = [d for d in range(r) if not reduced[d]]
    red = [d for d in range(r) if reduced[d]]
    args = sizes + [f"a{k}" for k in range(len(spec.inputs))] + [f"o{k}" for k in range(len(spec.outputs))]
    args.append("res")
    idx = [f"i{d}" for d in range(r)]
    lines = [f"def kernel({', '.join(args)}):"]
    lines.append(f"    part = cuda.shared.array({threads}, {acc_t})")
    lines.append("    t = cuda.threadIdx.x")
    lines.append(f"    outs = {' * '.join(sizes[d] for d in kept) or '1'}")
    lines.append(f"    count = {' * '.join(sizes[d] for d in red) or '1'}")
    lines.append("    for j in range(cuda.blockIdx.x, outs, cuda.gridDim.x):")
    lines += _unflatten("j", [idx[d] for d in kept], [sizes[d] for d in kept], "        ")
    lines.append(f"        acc = {acc_t}({init})")
    lines.append(f"        for q in range(t, count, {threads}):")
    lines += _unflatten("q", [idx[d] for d in red], [sizes[d] for d in red], "            ")
    body, names = _body(spec, idx, "            ")
    lines += body
    val = names[anchor.inputs[0].id]
    lines.append("            acc = " + rs.combine.format(a="acc", b=val))
    lines.append("        part[t] = acc")
    lines.append("        cuda.syncthreads()")
    lines.append(f"        w = {threads // 2}")
    lines.append("        while w > 0:")
    lines.append("            if t < w:")
    lines.append("                part[t] = " + rs.combine.format(a="part[t]", b="part[t + w]"))
    lines.append("            cuda.syncthreads()")
    lines.append("            w //= 2")
    lines.append("        if t == 0:")
    ridx = ", ".join("0" if reduced[d] else idx[d] for d in range(r))
    final = rs.finalize.format(a="part[0]", n="count") if rs.finalize else "part[0]"
    lines.append(f"            res[{ridx}] = {cast}({final})")
    lines.append("        cuda.syncthreads()")
    return HEADER.format(label=label) + "\n".join(lines) + "\n"


_LOADED: dict = {}


def load(source: str):
    """The kernel of `source` (compiled by numba.cuda on its first launch), one per source."""
    fn = _LOADED.get(source)
    if fn is None:
        import hashlib
        import linecache

        from graphc.backends.cuda import device

        device.cuda()
        name = f"<graphc-cuda-{hashlib.sha256(source.encode()).hexdigest()[:16]}>"
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)  # tracebacks show it
        scope: dict = {"__name__": "graphc_cuda_kernel"}
        exec(compile(source, name, "exec"), scope)
        fn = _LOADED[source] = scope["kernel"]
    return fn
