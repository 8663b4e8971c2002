"""The CUDA executable: the Numba backend's schedule, run by the CUDA runtime.

compile: optimize (graphc.passes) -> fuse (graphc.fusion, the same groups as on the CPU) ->
check that every group has a CUDA lowering -> per concrete shape a Schedule (backend key
"cuda") and its Runtime (runtime.py). A call checks the feeds (graphc.backends.feeds, as on
every backend), copies them up, runs the kernels, copies down the outputs asked for and
writes the updates that were not written in place, device to device. The variables stay on
the device (values.py); `report()` adds the host<->device copies to the compiler's summary.
"""

from dataclasses import dataclass, field

import numpy as np

from graphc.backends.cuda import device
from graphc.backends.cuda.runtime import BACKEND, Runtime, check_lowerings
from graphc.backends.cuda.values import resident
from graphc.backends.fused import FusedExecutable
from graphc.backends.schedule import Schedule
from graphc.ir import shapes
from graphc.passes.pipeline import Summary

__all__ = ["CudaExecutable", "CudaReport"]


@dataclass
class CudaReport(Summary):
    """The compiler's summary, then the device and the host<->device copies so far."""

    device: str = ""
    transfers: list = field(default_factory=list)

    def __str__(self):
        return "\n".join([super().__str__(), f"device: {self.device}", *self.transfers])


class CudaExecutable(FusedExecutable):
    """A graph compiled to CUDA kernels; call it like any Executable."""

    def __init__(
        self, graph, outputs=None, apply_updates: bool | None = None, passes: bool = True, disable=(), trace=None
    ):
        from graphc.backends.cuda import lowerings  # noqa: F401  (registers the CUDA lowerings)

        device.cuda()  # no device: a CudaUnavailableError naming both ways forward
        self.source_graph = graph
        self.variables = resident(graph)  # before the passes: the optimized copy shares it
        super().__init__(graph, outputs, apply_updates, passes, disable, trace)
        check_lowerings(self.kernels, {n.id: n for n in self.nodes})
        self.transfers = device.Transfers()  # this step's feeds, outputs, constants and masks
        self._runtimes: dict = {}
        if all(shapes.is_concrete(n.shape) for n in self.needed_inputs):
            self._specialise({})

    @property
    def device(self) -> str:
        return device.describe()

    def runtime(self, env: dict | None = None) -> Runtime:
        """The runtime of the specialisation for the dims `env` (made on first use)."""
        env = env or {}
        rt = self._runtimes.get(tuple(sorted(env.items())))
        if rt is None or not rt.current():
            rt = self._specialise(env)
        return rt

    @property
    def runtimes(self) -> dict:
        return dict(self._runtimes)

    def _specialise(self, env) -> Runtime:
        g = self.graph
        outs = [n for _, n in self._outputs]
        schedule = Schedule(
            self.nodes, self.kernels, outs, self._updates, env, g.params, dict.copy(self.variables), BACKEND
        )
        rt = self._runtimes[tuple(sorted(env.items()))] = Runtime(schedule, self.variables, self.transfers)
        return rt

    def execute(self, arrays, env):
        self._rt = self.runtime(env)
        return self._rt.run(arrays, self.needed_inputs, self.step)

    # -- what crosses back -----------------------------------------------------------------
    def _output_values(self, results: dict, arrays: dict) -> list:
        """The outputs, copied down into fresh host arrays (a fed input or a constant: a copy of
        the host array)."""
        out = []
        for vid, _ in self._out_ids:
            n = self._rt.node(vid)
            if n.is_input:
                out.append(np.array(arrays[n.name]))
            elif n.is_const:
                out.append(np.array(n.attrs["value"], dtype=n.dtype))
            else:
                d = results[vid]
                shape = self._rt.shape[vid]
                host = d.copy_to_host().reshape(shape) if d.size else np.empty(shape, d.dtype)
                self.transfers.add("d2h", "output", host.nbytes)
                out.append(host)
        return out

    def _write_updates(self, results: dict) -> None:
        """The updates not written in place, copied device to device into the variables; one
        whose value is another updated variable's array is copied aside first (a <- b, b <- a)."""
        dev = self.variables.dev
        writes = [(var, dev[var], results[vid]) for var, vid in self._update_ids]
        targets = {id(old) for _, old, _ in writes}
        staged = []
        for var, old, new in writes:
            if new is not old and id(new) in targets:
                tmp = device.empty(new.shape, new.dtype)
                tmp.copy_to_device(new)
                new = tmp
            staged.append((var, old, new))
        for var, old, new in staged:
            if new is not old and old.size:
                old.copy_to_device(new.reshape(old.shape) if new.shape != old.shape else new)
            self.variables.written(var)

    def sync(self) -> None:
        """Copy every variable the device has changed back into graph.values (reading graph.values
        does this for the variables read)."""
        self.variables.sync()

    def report(self):
        """Executable.report (the passes and fusion), then the device and the host<->device
        copies: this step's (inputs, outputs, constants, random masks) and the variables'
        (shared by every step of this graph's variables)."""
        base = super().report()
        lines = ["this step: " + s for s in self.transfers.lines()]
        lines += ["variables: " + s for s in self.variables.transfers.lines()]
        return CudaReport(list(base.rows), device=self.device, transfers=lines)
