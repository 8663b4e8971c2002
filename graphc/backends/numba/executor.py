"""The Numba executable: fused kernels run by the CPU runtime over a backend-neutral schedule.

compile: optimize (graphc.passes) -> fuse (graphc.fusion) -> per concrete shape a schedule
(graphc.backends.schedule: how each kernel group runs, where each value lives, which updates
are written in place, the memory plan) and its runtime (numba/runtime.py: buffers allocated
once, kernel arguments bound once, kernels generated and loaded from the disk cache or
compiled). A call (Executable.__call__) checks the feeds, runs the runtime's steps, copies the
outputs out and writes the updates that the kernels did not write in place.

Ops with no numba lowering run their NumPy reference inside the schedule (correct, and
their results are fresh arrays each call); random ops always do, so they draw the same
numbers as the reference interpreter.
"""

from graphc.backends.fused import FusedExecutable
from graphc.backends.numba.runtime import Runtime
from graphc.backends.schedule import Schedule
from graphc.fusion import is_loop_op
from graphc.ir import shapes

BACKEND = "numba"  # the key of this backend's lowerings (OpDef.lowerings)


class NumbaExecutable(FusedExecutable):
    """A graph compiled to Numba kernels; call it like any Executable."""

    def __init__(
        self, graph, outputs=None, apply_updates: bool | None = None, passes: bool = True, disable=(), trace=None
    ):
        from graphc.backends.numba import lowerings  # noqa: F401  (registers lowerings)

        self.source_graph = graph
        super().__init__(graph, outputs, apply_updates, passes, disable, trace)
        self._runtimes: dict = {}  # sorted dim bindings -> Runtime
        if all(shapes.is_concrete(n.shape) for n in self.needed_inputs):
            self._specialise({})  # everything is known: generate and compile now

    def runtime(self, env: dict | None = None) -> Runtime:
        """The runtime of the specialisation for the dims `env` (made on first use)."""
        env = env or {}
        rt = self._runtimes.get(tuple(sorted(env.items())))
        if rt is None or not rt.params_current(self.graph.values):
            rt = self._specialise(env)
        return rt

    @property
    def runtimes(self) -> dict:
        """Every specialisation's runtime, by its sorted dim bindings."""
        return dict(self._runtimes)

    def execute(self, arrays, env):
        return self.runtime(env).run(arrays, self.needed_inputs, self.step)

    def summary(self) -> str:
        """Executable.summary, then how each specialisation runs each scan: a native loop (its
        body's steps) or the reference loop and why (numba/scan_loop.py)."""
        from graphc.backends.numba.scan_loop import loop_lines

        return "\n".join([super().summary(), *loop_lines(self)])

    def _specialise(self, env) -> Runtime:
        g = self.graph
        outs = [n for _, n in self._outputs]
        schedule = Schedule(self.nodes, self.kernels, outs, self._updates, env, g.params, g.values, BACKEND)
        rt = self._runtimes[tuple(sorted(env.items()))] = Runtime(schedule, g.values)
        return rt


__all__ = ["NumbaExecutable", "is_loop_op"]
