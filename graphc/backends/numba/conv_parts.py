"""A conv's batch parts as native tasks for graphc's native team (lowerings_conv.py splits a
conv's batch over the tuner's threads): each part one series (chain.series) of its columns
kernel, a gemm per image and group, and its col2im kernel, made once per set of arrays."""

from graphc.backends.numba import accumulate, chain

__all__ = ["Parts", "gemms", "where"]


def where(*arrays) -> tuple:
    """The arrays' memory as a key: address, shape and strides of each."""
    return tuple((a.__array_interface__["data"][0], a.shape, a.strides) for a in arrays)


class Parts:
    """The native tasks of a conv's batch parts, so the team's workers run them (a handover of
    about a microsecond; a Python thread's took 75-115 us here, five times per LeNet step).

    A part is one series (chain.series) of pieces: its columns kernel, the gemms of its images
    and groups, a col2im kernel. Each piece is made again only when its arrays' memory (`where`:
    addresses, shapes and strides) changed, so a new batch each call makes the columns task again,
    not the gemms. A piece runs only in a call whose own arrays matched its key: its pointers
    are into them (the gemms hold no array; the kernels' tasks hold theirs)."""

    __slots__ = ("made", "series")

    # sets of tasks kept per piece: the gemms (which hold no array) for an output pool's two
    # arrays, when the caller holds the last result; a kernel's task holds its arrays, a fed batch
    # among them maybe, so only the latest is kept, as InputView keeps only the last fed array
    KEEP = {"gemms": 2}

    def __init__(self):
        self.made: dict = {}  # (lo, hi, piece's name) -> [(its key, [tasks])], the latest first
        self.series: dict = {}  # (lo, hi) -> (the pieces' task lists, their series)

    def task(self, lo, hi, pieces):
        """The part lo..hi as one NativeTask; `pieces`: [(name, key, make)] in order, make()
        giving a NativeTask or a list of them. None where one has no native task."""
        lists = []
        for name, key, make in pieces:
            kept = self.made.setdefault((lo, hi, name), [])
            got = next((e for e in kept if e[0] == key), None)
            if got is None:
                t = make()
                got = (key, t if isinstance(t, list) else [t])
            if not kept or kept[0] is not got:
                kept[:] = [got, *[e for e in kept if e is not got]][: self.KEEP.get(name, 1)]
            lists.append(got[1])
        s = self.series.get((lo, hi))
        if s is None or len(s[0]) != len(lists) or any(x is not y for x, y in zip(s[0], lists)):
            s = self.series[(lo, hi)] = (lists, chain.series([t for x in lists for t in x]))
        return s[1]


def gemms(products) -> list:
    """[(out, a, b)] as gemm tasks out = a @ b (None in the list where BLAS cannot take one).
    They hold no array: one may be an output pool's, which the pool hands out again only when
    nothing else holds it; Parts runs them only in a call whose arrays are at their addresses."""
    return [accumulate.task(o, a, b, 1.0, 0.0, hold=False) for o, a, b in products]
