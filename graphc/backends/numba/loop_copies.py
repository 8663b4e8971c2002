"""Sources of the explicit copy and fill loops that scan drivers and in-loop lowerings run.

Explicit loops compile in a fraction of the time Numba takes for a slice assignment between
arrays, and vectorise as well, as long as no index is `start + i`: that keeps NumPy's
negative-index wrap (the start is not evidently >= 0 to LLVM) and the loop gathers element by
element, so a block is copied by loops that run from its start.
"""

__all__ = ["copy_loops", "block_copy", "fill_loops"]


def copy_loops(src: str, dst: str, rank: int, index=None) -> str:
    """Source of nested loops over src's dims writing dst[index(i0, i1, ...)] = src[i0, i1, ...]
    (index: the identity by default). Explicit loops compile in a fraction of the time Numba
    takes for a slice assignment between arrays, and vectorise as well."""
    idx = [f"i{d}" for d in range(rank)]
    at = ", ".join(index(idx) if index else idx) or "()"
    lines = ["    " * d + f"for i{d} in range({src}.shape[{d}]):" for d in range(rank)]
    return "\n".join([*lines, "    " * rank + f"{dst}[{at}] = {src}[{', '.join(idx) or '()'}]"])


def block_copy(src: str, dst: str, starts, into: bool) -> str:
    """Source of nested loops copying a block: into=False, dst is the block of src that starts
    at index `starts` (dst[i0, i1] = src[s0 + i0, s1 + i1]); into=True, src goes into dst there.
    Each loop runs from its start (i1 in range(s1, s1 + n)) and the block's side is indexed
    i1 - s1: an index `s1 + i1` is not evidently >= 0, so it kept NumPy's negative-index
    wrap, and LLVM's loop gathered element by element (measured on the LSTM body's gate
    blocks: 3 gathers for each block copy, none so)."""
    block = src if into else dst
    lines, near, far = [], [], []
    for d, s in enumerate(starts):
        bounds = f"{s}, {s} + {block}.shape[{d}]" if s else f"{block}.shape[{d}]"
        lines.append("    " * d + f"for i{d} in range({bounds}):")
        far.append(f"i{d}")
        near.append(f"i{d} - {s}" if s else f"i{d}")
    at_block, at_whole = ", ".join(near) or "()", ", ".join(far) or "()"
    if into:
        return "\n".join([*lines, "    " * len(starts) + f"{dst}[{at_whole}] = {src}[{at_block}]"])
    return "\n".join([*lines, "    " * len(starts) + f"{dst}[{at_block}] = {src}[{at_whole}]"])


def fill_loops(dst: str, rank: int, value: str) -> str:
    """Source of nested loops setting every element of dst to value."""
    idx = ", ".join(f"i{d}" for d in range(rank)) or "()"
    lines = ["    " * d + f"for i{d} in range({dst}.shape[{d}]):" for d in range(rank)]
    return "\n".join([*lines, "    " * rank + f"{dst}[{idx}] = {value}"])
