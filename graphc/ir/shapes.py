"""Static shapes whose dimensions are ints or symbolic names (e.g. 'batch')."""

import numpy as np

from graphc.errors import InputError, ShapeError

Dim = int | str
Shape = tuple[Dim, ...]


def normalize(shape, what: str = "shape") -> Shape:
    """Check and tuple-ify a user shape: ints >= 0 or identifier strings."""
    if isinstance(shape, (int, str)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError as exc:
        raise ShapeError(f"{what} must be a tuple of ints or names, got {shape!r}") from exc
    out = []
    for d in dims:
        if isinstance(d, bool):
            raise ShapeError(f"{what} {shape!r}: dimension {d!r} is a bool, not a size")
        if isinstance(d, str):
            if not d.isidentifier():
                raise ShapeError(f"{what} {shape!r}: symbolic dimension {d!r} is not an identifier")
            out.append(d)
            continue
        try:
            i = int(d)
        except (TypeError, ValueError) as exc:
            raise ShapeError(f"{what} {shape!r}: dimension {d!r} is not an int or a name") from exc
        if i != d or i < 0:
            raise ShapeError(f"{what} {shape!r}: dimension {d!r} must be a non-negative int")
        out.append(i)
    return tuple(out)


def fmt(shape: Shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def is_concrete(shape: Shape) -> bool:
    return all(isinstance(d, int) for d in shape)


def symbols(shape: Shape) -> set[str]:
    return {d for d in shape if isinstance(d, str)}


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting, where a symbolic dim only matches itself or 1."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ShapeError("cannot broadcast " + " with ".join(fmt(s) for s in shapes))
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def numel(shape: Shape) -> int | None:
    n = 1
    for d in shape:
        if isinstance(d, str):
            return None
        n *= d
    return n


def normalize_axis(axis: int, rank: int, op: str = "") -> int:
    """axis (an int or NumPy integer, negative counting from the end) as 0..rank-1."""
    pre = f"{op}: " if op else ""
    if isinstance(axis, bool | np.bool_) or not isinstance(axis, int | np.integer):
        raise ShapeError(f"{pre}axis must be an int, got {axis!r} ({type(axis).__name__})")
    axis = int(axis)
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"{pre}axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def normalize_axes(axes, rank: int, op: str = "") -> tuple[int, ...]:
    """None means all axes; an int or a tuple/list of ints; returns sorted, unique, non-negative axes."""
    if axes is None:
        return tuple(range(rank))
    if isinstance(axes, int | np.integer) and not isinstance(axes, bool | np.bool_):
        axes = (axes,)
    if not isinstance(axes, tuple | list):
        pre = f"{op}: " if op else ""
        raise ShapeError(f"{pre}axis must be None, an int or a tuple of ints, got {axes!r} ({type(axes).__name__})")
    out = sorted({normalize_axis(a, rank, op) for a in axes})
    if len(out) != len(tuple(axes)):
        raise ShapeError(f"{op + ': ' if op else ''}repeated axis in {tuple(axes)}")
    return tuple(out)


def bind(expected: Shape, actual: tuple[int, ...], env: dict[str, int], what: str) -> None:
    """Match a concrete shape against a declared one, binding symbols into env."""
    if len(expected) != len(actual):
        raise InputError(f"{what}: expected shape {fmt(expected)} (rank {len(expected)}), got {tuple(actual)}")
    for e, a in zip(expected, actual):
        if isinstance(e, int):
            if e != a:
                raise InputError(f"{what}: expected shape {fmt(expected)}, got {tuple(actual)}")
        elif e in env and env[e] != a:
            raise InputError(
                f"{what}: dimension {e!r} is {a} here but {env[e]} in another input (shape {tuple(actual)})"
            )
        else:
            env[e] = a


def concrete(shape: Shape, env: dict[str, int]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else env[d] for d in shape)
