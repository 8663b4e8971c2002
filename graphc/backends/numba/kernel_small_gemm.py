"""A register-blocked float32 gemm for the small products of a loop's steps (kernel_blas.py).

A step's product is a few rows by a weight that fits in L2: the LSTM's 16x128 by 128x512 per
part. OpenBLAS packs both operands at every call and runs its small-M tiles at ~60% of the
core's peak there (measured here: 59 GFLOP/s against 94 on a 1024^3 product, one core). This
kernel reads the weight in place, row by row, and keeps a tile of R rows by two vectors of C in
registers across the whole K loop: per k, two vector loads of B, R broadcasts of A, 2R fused
multiply-adds. Tiles: R rows (8 with 16-lane vectors, 4 with 8-lane ones: 16 or 8
accumulators, half the register file) by 2 vectors, then one vector where N leaves a single
one, then single rows. It takes row-major A, B and C (leading dimensions given) with N a
multiple of the vector width; kernel_blas.py calls cblas otherwise.

The kernel is compiled once per process into the engine that loads graphc's kernels
(native.py resolves its symbol on demand: 0.08 s), not into every driver that calls it: inlined
there, it added about 0.15 s of optimisation to each driver's compile. `declare(module)` gives
a driver module the external function `void graphc_small_sgemm(ptr A, i64 lda, ptr B, i64 ldb,
ptr C, i64 ldc, i64 M, i64 N, i64 K)`, C = A @ B (no beta); `module_ir()` is the text that
defines it.
"""

from llvmlite import ir

__all__ = ["declare", "module_ir", "small_sgemm", "lanes", "fits"]

_I64, _F32, _PTR = ir.IntType(64), ir.FloatType(), ir.PointerType()
NAME = "graphc_small_sgemm"  # native.py resolves it by this name
MAX_ROWS = 64  # more rows than this: OpenBLAS's packing pays for itself
MAX_B = 1 << 17  # elements of B (512 KB): it stays in L2 for the whole product
# (A, lda, B, ldb, C, ldc, M, N, K), and (..., i0, j0, K) for a tile
_SIGNATURE = ir.FunctionType(ir.VoidType(), [_PTR, _I64, _PTR, _I64, _PTR, _I64, _I64, _I64, _I64])


def lanes() -> int:
    """float32 lanes of this machine's widest vectors: 16 with AVX-512, else 8."""
    import llvmlite.binding as llvm

    feats = llvm.get_host_cpu_features()
    return 16 if feats.get("avx512f", False) else 8


def fits(m: int, n: int, k: int) -> bool:
    """Whether a product of these sizes takes this kernel (the rule emit_dot also emits)."""
    return 0 < m <= MAX_ROWS and n > 0 and k > 0 and n % lanes() == 0 and n * k <= MAX_B


def declare(module: ir.Module) -> ir.Function:
    """The kernel's external declaration in `module` (once)."""
    got = module.globals.get(NAME)
    return got if got is not None else ir.Function(module, _SIGNATURE, name=NAME)


def module_ir() -> str:
    """The LLVM IR of a module defining the kernel for this machine's vector width."""
    mod = ir.Module(NAME)
    small_sgemm(mod)
    return str(mod)


def small_sgemm(module: ir.Module) -> ir.Function:
    """Define the kernel (and its tiles) in `module`."""
    got = module.globals.get(NAME)
    if got is not None:
        return got
    width = lanes()
    vec = ir.VectorType(_F32, width)
    rows = 8 if width == 16 else 4
    name = f"llvm.fma.v{width}f32"
    fma = module.globals.get(name) or ir.Function(module, ir.FunctionType(vec, [vec, vec, vec]), name=name)
    tiles = {(r, v): _tile(module, vec, fma, r, v) for r in (rows, 1) for v in (2, 1)}
    fn = ir.Function(module, _SIGNATURE, name=NAME)
    a, lda, b, ldb, c, ldc, m, n, k = fn.args
    bld = ir.IRBuilder(fn.append_basic_block("entry"))
    wide = width * 2
    n2 = bld.mul(bld.udiv(n, ir.Constant(_I64, wide)), ir.Constant(_I64, wide))  # columns in 2-vector panels
    m_r = bld.mul(bld.udiv(m, ir.Constant(_I64, rows)), ir.Constant(_I64, rows))  # rows in full tiles

    def panels(j0, j1, step, v):
        def tile(r, j):
            return lambda i: bld.call(tiles[r, v], [a, lda, b, ldb, c, ldc, i, j, k])

        def panel(j):
            _for(bld, fn, ir.Constant(_I64, 0), m_r, rows, tile(rows, j))
            _for(bld, fn, m_r, m, 1, tile(1, j))

        _for(bld, fn, j0, j1, step, panel)

    panels(ir.Constant(_I64, 0), n2, wide, 2)
    panels(n2, n, width, 1)  # at most one vector of columns left
    bld.ret_void()
    return fn


def _for(bld, fn, start, stop, step, body) -> None:
    """for i in range(start, stop, step): body(i), at the builder's position (i64 values)."""
    head, loop, done = (fn.append_basic_block(x) for x in ("for.head", "for.body", "for.done"))
    pre = bld.block
    bld.branch(head)
    bld.position_at_end(head)
    i = bld.phi(_I64)
    i.add_incoming(start, pre)
    bld.cbranch(bld.icmp_signed("<", i, stop), loop, done)
    bld.position_at_end(loop)
    body(i)
    nxt = bld.add(i, ir.Constant(_I64, step))
    i.add_incoming(nxt, bld.block)
    bld.branch(head)
    bld.position_at_end(done)


def _tile(module, vec, fma, r: int, v: int) -> ir.Function:
    """C[i0:i0+r, j0:j0+v*lanes] = A[i0:i0+r, :] @ B[:, j0:j0+v*lanes], the tile in registers."""
    width = vec.count
    fn = ir.Function(module, _SIGNATURE, name=f"{NAME}_tile{r}x{v}")
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    a, lda, b, ldb, c, ldc, i0, j0, k = fn.args
    entry, loop, done = (fn.append_basic_block(x) for x in ("entry", "k", "store"))
    bld = ir.IRBuilder(entry)
    zero = ir.Constant(vec, None)
    arows = [bld.gep(a, [bld.mul(bld.add(i0, ir.Constant(_I64, x)), lda)], source_etype=_F32) for x in range(r)]
    bcol = bld.gep(b, [j0], source_etype=_F32)
    bld.cbranch(bld.icmp_signed(">", k, ir.Constant(_I64, 0)), loop, done)
    bld.position_at_end(loop)
    p = bld.phi(_I64)
    p.add_incoming(ir.Constant(_I64, 0), entry)
    accs = [[bld.phi(vec) for _ in range(v)] for _ in range(r)]
    for row in accs:
        for acc in row:
            acc.add_incoming(zero, entry)
    brow = bld.gep(bcol, [bld.mul(p, ldb)], source_etype=_F32)
    bs = []
    for x in range(v):
        at = bld.gep(brow, [ir.Constant(_I64, width * x)], source_etype=_F32)
        bs.append(bld.load(at, typ=vec, align=4))
    undef = ir.Constant(vec, ir.Undefined)
    lane0, zeros = ir.Constant(ir.IntType(32), 0), ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width)
    news = []
    for x in range(r):
        s = bld.load(bld.gep(arows[x], [p], source_etype=_F32), typ=_F32, align=4)
        splat = bld.shuffle_vector(bld.insert_element(undef, s, lane0), undef, zeros)  # A[i, p] in every lane
        news.append([bld.call(fma, [splat, bs[y], accs[x][y]]) for y in range(v)])
    p1 = bld.add(p, ir.Constant(_I64, 1))
    for x in range(r):
        for y in range(v):
            accs[x][y].add_incoming(news[x][y], loop)
    p.add_incoming(p1, loop)
    bld.cbranch(bld.icmp_signed("<", p1, k), loop, done)
    bld.position_at_end(done)
    outs = []
    for x in range(r):
        outs.append([])
        for y in range(v):
            out = bld.phi(vec)
            out.add_incoming(zero, entry)
            out.add_incoming(news[x][y], loop)
            outs[-1].append(out)
    for x in range(r):
        crow = bld.gep(c, [bld.add(bld.mul(bld.add(i0, ir.Constant(_I64, x)), ldc), j0)], source_etype=_F32)
        for y in range(v):
            bld.store(outs[x][y], bld.gep(crow, [ir.Constant(_I64, width * y)], source_etype=_F32), align=4)
    bld.ret_void()
    return fn
