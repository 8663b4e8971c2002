"""The Numba CPU backend: fused loop kernels generated from op templates, BLAS for matmul.

Importing this package is cheap (Numba loads on the first compile). See executor.py for the
schedule and memory plan, codegen.py for kernel source, cache.py for the disk cache.
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
    """Kernels compiled / loaded from the disk cache / reused in memory / rebuilt, this process."""
    from graphc.backends.numba.cache import stats

    return stats()


def fusable_reduction(node) -> bool:
    """Whether the loop generator fuses this reduction with its producers (the fusion predicate)."""
    from graphc.backends.loopgen import reduce_spec

    return reduce_spec(node) is not None
