"""A native kernel entry on disk: its name, header, atomic write, checked read, and the ELF
symbols its object code needs (native.py loads entries; this module only reads and writes them).

An entry is MAGIC, the header's length, the header (JSON: the kernel, its argument types, this
machine's LLVM CPU, a checksum of the object code), then the kernel's object code and its
thunk's. Written atomically (a temporary file, then os.replace: concurrent writers write the
same bytes); an entry that does not parse, holds another kernel or another machine's code, or
fails its checksum raises BadEntry on reading (the caller compiles and rewrites it).
"""

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

MAGIC = b"GRAPHC-NATIVE-1\n"


def entry_name(kernel_id: str, key: str) -> str:
    h = hashlib.sha256(f"{kernel_id}|{key}|{machine()}".encode()).hexdigest()[:32]
    return f"nk_{h}.bin"


_MACHINE = None


def machine() -> str:
    """This machine's LLVM CPU and features (object code for another CPU is never loaded)."""
    global _MACHINE
    if _MACHINE is None:
        llvm = llvm_binding()
        _MACHINE = f"{llvm.get_host_cpu_name()}|{llvm.get_host_cpu_features().flatten()}"
    return _MACHINE


def llvm_binding():
    import llvmlite.binding as llvm

    return llvm


# -- reading and writing entries -------------------------------------------------------------------
def entry_header(kernel_id: str, key: str, header: dict, kernel_obj: bytes, thunk_obj: bytes) -> dict:
    """An entry's full header: `header` with what names and checks the entry."""
    sha = hashlib.sha256(kernel_obj + thunk_obj).hexdigest()
    return dict(header, kernel=kernel_id, types=key, machine=machine(), sha=sha, split=len(kernel_obj))


def write(folder: Path, kernel_id: str, key: str, header: dict, kernel_obj: bytes, thunk_obj: bytes) -> bool:
    """Write an entry (the kernel's object code, then its thunk's) atomically; False if the
    folder cannot be written."""
    obj = kernel_obj + thunk_obj
    head = entry_header(kernel_id, key, header, kernel_obj, thunk_obj)
    text = json.dumps(head, sort_keys=True).encode()
    data = MAGIC + struct.pack("<I", len(text)) + text + obj
    return write_atomic(folder, entry_name(kernel_id, key), data)


def write_atomic(folder: Path, name: str, data: bytes) -> bool:
    """folder/name holds `data`, written whole or not at all (a temporary file, then os.replace:
    concurrent writers write the same bytes); False if the folder cannot be written."""
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".bin")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / name)
        tmp = None
        return True
    except OSError:
        return False
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


class BadEntry(Exception):
    """An entry that cannot be used (the message says why)."""


def read(path: Path, kernel_id: str, key: str) -> tuple[dict, bytes, bytes] | None:
    """The header and the two object codes of an entry; None if absent; BadEntry if unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BadEntry(f"unreadable: {e}") from e
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise BadEntry("not a native kernel entry")
    (n,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        head = json.loads(data[start : start + n])
    except (ValueError, UnicodeDecodeError) as e:
        raise BadEntry(f"bad header: {e}") from e
    obj = data[start + n :]
    if not isinstance(head, dict) or (head.get("kernel"), head.get("types")) != (kernel_id, key):
        raise BadEntry(f"foreign entry (holds {head.get('kernel') if isinstance(head, dict) else '?'})")
    if head.get("machine") != machine():
        raise BadEntry("compiled for another CPU")
    if hashlib.sha256(obj).hexdigest() != head.get("sha"):
        raise BadEntry("checksum mismatch (truncated or corrupt)")
    return head, obj[: head["split"]], obj[head["split"] :]


# -- ELF: the symbols an object file needs ---------------------------------------------------------
def undefined_symbols(obj: bytes) -> list[str]:
    """Names of the undefined symbols of an ELF64 little-endian object file."""
    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        raise BadEntry("object code is not ELF64 little-endian")
    shoff = struct.unpack_from("<Q", obj, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    names = []
    for _, typ, _, _, off, size, link, _, _, entsize in secs:
        if typ != 2:  # SHT_SYMTAB
            continue
        stroff = secs[link][4]
        for k in range(size // entsize):
            st_name, _, _, shndx, _, _ = struct.unpack_from("<IBBHQQ", obj, off + k * entsize)
            if shndx == 0 and st_name:
                end = obj.index(b"\0", stroff + st_name)
                names.append(obj[stroff + st_name : end].decode())
    return names


def host_target_machine():
    """A new LLVM target machine for this CPU (-O3, the JIT's code model): graphc's own kernels
    and helpers are compiled with it. Each compiling module keeps its own, under its own lock."""
    llvm = llvm_binding()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    cpu, feats = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=cpu, features=feats, opt=3, codemodel="jitdefault"
    )


def optimise(mod, tm, unroll: bool) -> None:
    """LLVM's -O3 pipeline on module `mod` for `tm`, vectorising and interleaving, loops unrolled
    only if `unroll`: the code is two thirds the size, made in 0.8x the time, and runs as fast or
    faster without (the LeNet step's kernels: 0.44 ms against 0.46 ms with unrolling; im2col 94
    against 104 us; measured side by side)."""
    llvm = llvm_binding()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = pto.slp_vectorization = pto.loop_interleaving = True
    pto.loop_unrolling = unroll
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
