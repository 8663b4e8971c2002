"""RunContext: what an op's NumPy reference may read besides its inputs.

It lives beside the OpDefs that read it, so the backends (which run references) and the
passes (constant folding runs them too) both import it from here, not from each other.
"""


class RunContext:
    """What a reference implementation may read besides its inputs: the feeds (by input name),
    the variables' values (by name), the symbolic dimensions' sizes, the run counter and, in a
    loop body, `loop`: the time index of each enclosing scan, outermost first (random ops fold
    it into their seed)."""

    __slots__ = ("feeds", "params", "env", "step", "loop")

    def __init__(self, feeds, params, env, step, loop=()):
        self.feeds, self.params, self.env, self.step, self.loop = feeds, params, env, step, tuple(loop)

    def concrete(self, shape):
        return tuple(d if isinstance(d, int) else self.env[d] for d in shape)
