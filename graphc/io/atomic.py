"""Atomic file writes, named so that what a killed writer left behind can be recognised and removed.

Every file a save creates carries the save's writer tag, `<host>-<pid>-<nonce>` (a short hash of
the host name, the writing process, 8 random hex digits): a file written under its final,
never-reused name (`write_new`), or a temporary file `.<target>.<tag>.tmp` renamed over its target
(`atomic_write`). A process that is killed mid-save cannot clean up; the next save of the same
target removes its leftovers with `remove_stale`, which deletes a file only when its writer is
certainly finished:

- tagged by this process: its save is no longer running (saves in flight are kept in a set);
- tagged by another process on this host: that process no longer exists;
- anything else (another host, an untagged temporary file from an older graphc, a live process
  that may have reused a dead writer's pid): its last change is over STALE_AFTER old.

So a concurrent writer's files are never removed while it runs, and a killed writer's are removed
by the next save. The functions raise plain OSError; the public save functions turn it into a
FileWriteError that names their target.
"""

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from graphc.errors import FileWriteError

STALE_AFTER = 24 * 3600.0  # seconds: no save takes a day, so a file that old has no live writer
TAG = r"[0-9a-f]{6}-[0-9]+-[0-9a-f]{8}"
OLD_TMP = r"[a-z0-9_]{8}"  # tempfile.mkstemp's random part, in temporary names of graphc before tags

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TAG_RE = re.compile(r"([0-9a-f]{6})-([0-9]+)-[0-9a-f]{8}")  # TAG, with host and pid as groups
_in_flight: set[str] = set()
_lock = threading.Lock()


_targets: dict[str, threading.RLock] = {}


@contextlib.contextmanager
def exclusive(target) -> Iterator[None]:
    """Saves of one target by this process's threads, one at a time: a save's clean-up reads which
    files the target names, and a second thread committing between that read and the removals
    would otherwise lose its files. (Saves from other processes are not serialised: the last one
    to commit wins, and a reader retries a file replaced under it.)"""
    key = os.path.abspath(target)
    with _lock:
        lock = _targets.setdefault(key, threading.RLock())
    with lock:
        yield


@contextlib.contextmanager
def writing() -> Iterator[str]:
    """A fresh writer tag, marked as in flight (so never stale) while the block runs."""
    tag = f"{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"
    with _lock:
        _in_flight.add(tag)
    try:
        yield tag
    finally:
        with _lock:
            _in_flight.discard(tag)


def writer_finished(tag: str | None, mtime: float, now: float | None = None) -> bool:
    """Whether the save that wrote a file tagged `tag` (None: untagged) is certainly over."""
    m = _TAG_RE.fullmatch(tag) if tag else None
    old = (time.time() if now is None else now) - mtime > STALE_AFTER
    if m is None or m.group(1) != _HOST:
        return old
    pid = int(m.group(2))
    if pid == os.getpid():
        with _lock:
            return tag not in _in_flight
    return old or not _process_exists(pid)


def _process_exists(pid: int) -> bool:
    if pid <= 0 or os.name != "posix":  # kill(0, ...) means the process group; Windows' kill terminates
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def make_folder(folder: Path) -> None:
    """Create `folder` and its parents; an ancestor that is a file is named in the error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise NotADirectoryError(errno.ENOTDIR, f"{str(blocker)!r} is a file, not a folder") from None


def write_new(path: Path, data: bytes, mode: int | None = None) -> None:
    """Create `path` (it must not exist) with `data`, synced to disk; no partial file survives an error.

    mode: its permission bits (default 0666 less the umask, as for any new file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def atomic_write(path, data: bytes, tag: str | None = None) -> None:
    """Replace `path` with `data` in one step: a temporary file in the same folder, then os.replace.

    An existing file's permissions are kept; a new one gets the usual ones (0666 less the umask).
    """
    path = Path(path)
    with contextlib.ExitStack() as stack:
        if tag is None:
            tag = stack.enter_context(writing())
        tmp = path.with_name(f".{path.name}.{tag}.tmp")
        write_new(tmp, data, mode_of(path))
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    sync_folder(path.parent)


def mode_of(path: Path) -> int | None:
    """The permission bits of an existing file (None if there is none), to give its replacement."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return None


def sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every system can sync a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale(folder: Path, pattern: re.Pattern, keep: Iterable[str] = ()) -> list[str]:
    """Remove the files in `folder` whose whole name matches `pattern` and whose writer is finished.

    The pattern's group `tag`, where it matched, is the writer tag; files without one are judged
    by age. Names in `keep` stay. Returns the names removed; errors are ignored (a later save
    tries again).
    """
    keep, removed, now = set(keep), [], time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or entry.name in keep:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if writer_finished(m.groupdict().get("tag"), entry.stat(follow_symlinks=False).st_mtime, now):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue
    return removed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_error(what: str, target, exc: OSError) -> FileWriteError:
    """The FileWriteError for `exc`, naming `target` (never the temporary file), with its errno."""
    if isinstance(exc, FileWriteError):
        return exc
    reason = exc.strerror or str(exc)
    err = FileWriteError(f"cannot write {what} {str(target)!r}: {reason}")
    err.errno = exc.errno  # (strerror and filename stay unset: OSError's str() would then ignore the message)
    return err
