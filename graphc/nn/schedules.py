"""Learning-rate schedules computed inside the training graph from the optimizer's step variable.

A schedule maps the base learning rate and the 0-based step count (a float32 scalar node:
the number of updates done before this one) to this step's learning rate. `value(lr, step)`
gives the same number in Python, for logging and tests.
"""

import math

from graphc.errors import AttributeValueError
from graphc.ir.node import Node
from graphc.ops import api as F
from graphc.ops.registry import error

__all__ = ["Schedule", "Constant", "StepDecay", "ExponentialDecay", "CosineDecay", "Warmup", "check_schedule"]


def _positive_int(owner, what, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        error(AttributeValueError, owner, f"{what} must be an int >= 1, got {v!r}")
    return v


def _number(owner, what, v, lo, hi, lo_open=False, hi_open=False):
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
        error(AttributeValueError, owner, f"{what} must be in {lb}{lo}, {hi}{rb}, got {v!r}")
    return float(v)


def _floor_nonneg(x: Node) -> Node:
    # Truncation is floor for x >= 0, and casts exist in every backend.
    return F.cast(F.cast(x, "int64"), x.dtype)


class Schedule:
    """Base class: subclasses implement graph(lr, step) and value(lr, step)."""

    def __call__(self, lr: Node | float, step: Node) -> Node:
        return self.graph(lr, step)

    def graph(self, lr, step: Node) -> Node:
        raise NotImplementedError

    def value(self, lr: float, step: int) -> float:
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    def graph(self, lr, step):
        return lr * F.ones_like(step)

    def value(self, lr, step):
        return float(lr)


class StepDecay(Schedule):
    """lr * gamma ** floor(step / step_size): multiply by gamma every step_size steps."""

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size = _positive_int("StepDecay", "step_size", step_size)
        self.gamma = _number("StepDecay", "gamma", gamma, 0.0, 1.0, lo_open=True)

    def graph(self, lr, step):
        return lr * F.pow(F.constant(self.gamma, step.dtype, graph=step.graph), _floor_nonneg(step / self.step_size))

    def value(self, lr, step):
        return lr * self.gamma ** (step // self.step_size)


class ExponentialDecay(Schedule):
    """lr * gamma ** step."""

    def __init__(self, gamma: float):
        self.gamma = _number("ExponentialDecay", "gamma", gamma, 0.0, 1.0, lo_open=True)

    def graph(self, lr, step):
        return lr * F.pow(F.constant(self.gamma, step.dtype, graph=step.graph), step)

    def value(self, lr, step):
        return lr * self.gamma**step


class CosineDecay(Schedule):
    """Cosine annealing from lr to min_lr over total_steps, then min_lr.

    lr_t = min_lr + (lr - min_lr) * (1 + cos(pi * min(t, total_steps) / total_steps)) / 2.
    """

    def __init__(self, total_steps: int, min_lr: float = 0.0):
        self.total_steps = _positive_int("CosineDecay", "total_steps", total_steps)
        self.min_lr = _number("CosineDecay", "min_lr", min_lr, 0.0, math.inf, hi_open=True)

    def graph(self, lr, step):
        frac = F.minimum(step, float(self.total_steps)) * (math.pi / self.total_steps)
        return self.min_lr + (lr - self.min_lr) * (0.5 * (1.0 + F.cos(frac)))

    def value(self, lr, step):
        frac = min(step, self.total_steps) / self.total_steps
        return self.min_lr + (lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))


class Warmup(Schedule):
    """Linear warm-up over `steps` steps (from lr/steps up to lr), then `then` (or constant)."""

    def __init__(self, steps: int, then: Schedule | None = None):
        self.steps = _positive_int("Warmup", "steps", steps)
        self.then = check_schedule("Warmup", then) if then is not None else Constant()

    def graph(self, lr, step):
        ramp = F.minimum((step + 1.0) / float(self.steps), 1.0)
        after = self.then.graph(lr, F.maximum(step - float(self.steps), 0.0))
        return ramp * after

    def value(self, lr, step):
        return min((step + 1) / self.steps, 1.0) * self.then.value(lr, max(step - self.steps, 0))


def check_schedule(owner: str, schedule):
    """A Schedule, or None; anything else is an error naming `owner`."""
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    error(
        AttributeValueError,
        owner,
        f"schedule must be a graphc.nn.schedules.Schedule (StepDecay, CosineDecay, ...), got {schedule!r}",
    )
