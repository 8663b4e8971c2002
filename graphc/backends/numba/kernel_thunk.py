"""The thunk through which native.py calls a kernel's native function (no Numba needed to write it).

A native function takes Numba's calling convention: `i32 f(ret*, excinfo*, args...)`, an array
flattened to (meminfo, parent, nitems, itemsize, data, shape..., strides...), an int as i64, a
bool as i8, a float as double. The thunk `i32 thunk(i64* block, PyObject* arrays, ptr ret)`
calls f (its address at block[0]) with the arrays of tuple `arrays` (data, shape and strides
read from each ndarray) and the scalars of block[1:].
"""

__all__ = ["codes", "thunk_ir"]

_LLTYPE = {"P": "ptr", "I": "i64", "B": "i8", "F": "float", "D": "double"}
# CPython and NumPy object layouts the thunk reads (stable ABI fields of a 64-bit build):
_TUPLE_ITEMS = 24  # PyTupleObject.ob_item
_ARRAY_DATA, _ARRAY_DIMS, _ARRAY_STRIDES = 16, 32, 40  # PyArrayObject_fields.data, .dimensions, .strides


def codes(kinds) -> str:
    """The flattened argument codes of `kinds` (per argument ("a", ndim, itemsize), "i", "b" or "d")."""
    out = []
    for k in kinds:
        out.append("PPIIP" + "I" * (2 * k[1]) if isinstance(k, tuple) else {"i": "I", "b": "B", "d": "D"}[k])
    return "".join(out)


def thunk_ir(name: str, kinds) -> str:
    """LLVM IR of the thunk `name` for a native function of argument `kinds` (see codes)."""
    body, vals = [], []
    na = ns = 0
    for kind in kinds:
        if isinstance(kind, tuple):
            _, ndim, item = kind
            k, na = na, na + 1
            o = f"%o{k}"
            body += [f"{o}p = getelementptr i8, ptr %arrays, i64 {_TUPLE_ITEMS + 8 * k}", f"{o} = load ptr, ptr {o}p"]
            for f, off in (("d", _ARRAY_DATA), ("s", _ARRAY_DIMS), ("t", _ARRAY_STRIDES)):
                body += [f"%{f}{k}p = getelementptr i8, ptr {o}, i64 {off}", f"%{f}{k} = load ptr, ptr %{f}{k}p"]
            dims, strides, n = [], [], "1"
            for i in range(ndim):
                for f, out in (("s", dims), ("t", strides)):
                    v = f"%{f}{k}_{i}"
                    body += [f"{v}p = getelementptr i64, ptr %{f}{k}, i64 {i}", f"{v} = load i64, ptr {v}p"]
                    out.append(("i64", v))
                body.append(f"%n{k}_{i} = mul i64 {n}, %s{k}_{i}")
                n = f"%n{k}_{i}"
            vals += [("ptr", "null"), ("ptr", "null"), ("i64", n), ("i64", str(item)), ("ptr", f"%d{k}")]
            vals += dims + strides
        else:
            ns += 1
            v = f"%v{ns}"
            body.append(f"{v}p = getelementptr i64, ptr %block, i64 {ns}")
            if kind == "b":
                body += [f"{v}w = load i64, ptr {v}p", f"{v} = trunc i64 {v}w to i8"]
                vals.append(("i8", v))
            elif kind == "d":
                body.append(f"{v} = load double, ptr {v}p")
                vals.append(("double", v))
            else:
                body.append(f"{v} = load i64, ptr {v}p")
                vals.append(("i64", v))
    assert [t for t, _ in vals] == [_LLTYPE[c] for c in codes(kinds)]
    args = ", ".join(f"{t} {v}" for t, v in vals)
    lines = [f"define i32 @{name}(ptr %block, ptr %arrays, ptr %ret) {{", "entry:", "  %exc = alloca ptr"]
    lines += ["  " + b for b in body]
    lines += ["  %fn = load ptr, ptr %block", f"  %r = call i32 %fn(ptr %ret, ptr %exc, {args})", "  ret i32 %r", "}"]
    return "\n".join(lines) + "\n"
