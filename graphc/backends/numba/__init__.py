"""The Numba CPU backend: fused loop kernels generated from op templates, BLAS for matmul.

Importing this package is cheap (Numba loads on the first compile that needs it: graphc compiles
the kernels it generates itself, direct.py, so a graph whose kernels all translate never imports
it, and with a warm cache no graph does). executor.py compiles a graph into a backend-neutral schedule per shape
(graphc.backends.schedule); runtime.py runs one (buffers, bound kernels, steps.py's steps);
loops.py and codegen.py write the kernels' source, cache.py keeps them on disk (cache_folder.py:
where; numba_cache.py: Numba's entries; native.py: kernels loaded as machine code without Numba).
"""

from graphc.backends.base import Backend, register_backend


@register_backend("numba")
class NumbaBackend(Backend):
    options = ("apply_updates", "passes", "disable", "trace")

    def compile(self, graph, outputs=None, **options):
        """Options: apply_updates (see gc.compile), passes=True (run graphc.passes.optimize
        first), disable=(pass names), trace=callable (e.g. print: the graph before and after each pass)."""
        from graphc.backends.numba.executor import NumbaExecutable

        return NumbaExecutable(graph, outputs, **options)


def compile_stats() -> dict:
    """Kernels compiled (`direct`: of those, by graphc itself, without Numba) / loaded from the disk
    cache (`native`: of those, without Numba) / reused in memory / rebuilt, this process, and
    `compile_s`, the seconds spent compiling or loading them."""
    from graphc.backends.numba.cache import stats

    return stats()


def fusable_reduction(node) -> bool:
    """Whether the loop generator fuses this reduction with its producers (the fusion predicate)."""
    from graphc.backends.loopgen import reduce_spec

    return reduce_spec(node) is not None
