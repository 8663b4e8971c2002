"""The scan on the CUDA backend: a host loop over the body's device kernels.

The body (a SubGraph) is fused like a graph (graphc.fusion.fuse_body) and scheduled like one
(the same Schedule and CUDA Runtime, bound once per shape specialisation of the scan); its
inputs are device buffers of its own. Each step, on the device: the carries and the step's x
slices are copied into those buffers (the carries also into the stacked residuals), the body's
kernels run, and its outputs are copied into the stacked ys and the carries. Nothing crosses
to the host inside the loop.

What it costs per step: one Python iteration that launches the body's kernels plus one copy
kernel per carry (twice: residual and input), per x slice and per y, so a body of K kernels
with c carries, x slices and y outputs makes about K + 2c + x + y launches per step. A native
device loop (the whole scan in one kernel, or CUDA graphs) would remove the launches; that is
not done here.
"""

from graphc.backends.cuda import device
from graphc.backends.cuda import library as lib
from graphc.backends.loopgen import reduce_spec
from graphc.backends.schedule import Schedule
from graphc.fusion import fuse_body
from graphc.ir import shapes
from graphc.ops.registry import lowering


class _NoVariables:
    """A body has no variables (what it reads from outside is captured as inputs)."""

    transfers = device.Transfers()

    def device_array(self, name):  # pragma: no cover - a body never has a param node
        raise KeyError(name)


class ScanLoop:
    """One scan node bound at one shape: the body's runtime and the scan's output buffers."""

    def __init__(self, node, in_shapes, out_shapes):
        from graphc.backends.cuda.runtime import Runtime, check_lowerings

        a = node.attrs
        body, self.nc, self.nx = a["body"], a["num_carry"], a["num_xs"]
        self.ny = len(body.outputs) - self.nc
        self.reverse = a["reverse"]
        env: dict = {}
        for x, s in zip(node.inputs, in_shapes):
            shapes.bind(x.shape, s, env, "scan")
        (self.length,) = shapes.concrete((a["length"],), env)
        kernels = fuse_body(body, lambda n: reduce_spec(n) is not None)
        check_lowerings(kernels, {n.id: n for n in body.nodes})
        schedule = Schedule(body.nodes, kernels, body.outputs, {}, env, {}, {}, "cuda")
        self.transfers = device.Transfers()
        self.rt = Runtime(schedule, _NoVariables(), self.transfers, host_feeds=False)
        self.inputs = [self.rt.static[n.id] for n in body.all_inputs]
        self.outputs = [n.id for n in body.outputs]
        self.outs = tuple(device.empty(s, dt) for s, (_, dt) in zip(out_shapes, node.types))
        self.kernels = kernels
        self.staged = [device.empty(b.shape, b.dtype) for b in self.inputs[: self.nc]]

    wants_ctx = True  # the Runtime passes its RunContext: the step and loop indices random ops read

    def __call__(self, *args, ctx):
        nc, nx, ny = self.nc, self.nx, self.ny
        carry, xs, caps = list(args[:nc]), args[nc : nc + nx], args[nc + nx :]
        final, ys, res = self.outs[:nc], self.outs[nc : nc + ny], self.outs[nc + ny :]
        body_in = self.inputs
        for buf, cap in zip(body_in[nc + nx :], caps):
            lib.copy(buf, cap)  # loop-invariant: once per call
        for buf, c in zip(body_in[:nc], carry):
            lib.copy(buf, c)
        rt = self.rt
        step, outer_loop = ctx.step, ctx.loop
        steps = range(self.length - 1, -1, -1) if self.reverse else range(self.length)
        for t in steps:
            for r, buf in zip(res, body_in[:nc]):
                lib.copy(_at(r, t), buf)
            for buf, x in zip(body_in[nc : nc + nx], xs):
                lib.copy(buf, _at(x, t))
            vals = rt.run_device(step, (*outer_loop, t))
            for y, o in zip(ys, self.outputs[nc:]):
                lib.copy(_at(y, t), vals[o])
            new = [vals[o] for o in self.outputs[:nc]]
            if any(any(c is b for b in body_in) for c in new):  # a carry passed through: copy aside first
                for st, c in zip(self.staged, new):
                    lib.copy(st, c)
                new = self.staged
            for buf, c in zip(body_in[:nc], new):
                if c is not buf:
                    lib.copy(buf, c)
        for f, buf in zip(final, body_in[:nc]):
            lib.copy(f, buf)
        return self.outs


def _at(a, t):
    """Step t of a stacked device array, as a device array (a slice: indexing a 1-d device array
    would copy one number to the host)."""
    return a[t : t + 1]


@lowering("scan", "cuda")
def _scan(node, in_shapes, out_shapes):
    loop = ScanLoop(node, in_shapes, out_shapes)
    return loop
