"""Saving graph files: one commit point (a save killed at any step leaves the old or the new graph),
killed saves' leftovers removed by the next save, and write failures that name the target."""

import errno
import os
import subprocess
import threading
import time

import numpy as np
import pytest
from crashing import run_killed_at

import graphc as gc
from graphc.errors import FileWriteError, GraphFileError
from graphc.io import atomic
from graphc.io.graph_file import arrays_file, load_graph, save_graph


def make_graph(seed: int, name: str):
    with gc.Graph(name, seed=seed) as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 4))
        b = g.param("b", (4,), init="normal")
        g.output("y", gc.tanh(x @ w + b))
    return g


def same(a, b) -> bool:
    return (
        a.text() == b.text()
        and a.values.keys() == b.values.keys()
        and all(np.array_equal(a.values[k], b.values[k]) for k in a.values)
    )


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_graph(tmp_path):
    old, new = make_graph(1, "old"), make_graph(2, "new")
    folder = tmp_path / "graphs"
    path = folder / "g.json"
    save_graph(old, path)
    outcomes = []
    for step in range(1, 100):
        killed = run_killed_at(step, lambda: save_graph(new, path), tmp_path)
        got = load_graph(path)  # never a GraphFileError: the file is whole, whichever it is
        assert same(got, old) or same(got, new), step
        outcomes.append("new" if same(got, new) else "old")
        if not killed:
            break
        save_graph(old, path)  # the next save removes what the killed one left behind
        assert listing(folder) == ["g.json", arrays_file(path).name], step
    assert outcomes[-1] == "new" and step > 10  # the save really went through many steps
    assert "old" in outcomes and outcomes.count("new") >= 2  # killed before and after the commit
    assert listing(folder) == ["g.json", arrays_file(path).name]


def test_leftovers_are_removed_only_when_their_writer_is_finished(tmp_path):
    g = make_graph(1, "g")
    path = tmp_path / "g.json"
    save_graph(g, path)
    host, other_host = atomic._HOST, "000000" if atomic._HOST != "000000" else "111111"
    child = subprocess.Popen(["true"])
    child.wait()
    dead, live, me = child.pid, os.getppid(), os.getpid()
    day_ago = time.time() - atomic.STALE_AFTER - 60
    cases = {  # name: (age, removed?)
        f".g.json.{host}-{dead}-0000000a.tmp": (None, True),  # a killed writer's temporary file
        f"g.json.{host}-{dead}-0000000b.npz": (None, True),  # its arrays, written before the kill
        f".g.json.{host}-{me}-0000000c.tmp": (None, True),  # this process, no save of it running
        f".g.json.{host}-{live}-0000000d.tmp": (None, False),  # a running process: maybe saving now
        f".g.json.{host}-{dead}-0000000e.tmp.bak": (day_ago, False),  # not a name of ours
        f"g.json.{host}-{live}-0000000f.npz": (day_ago, True),  # a day old: its pid was reused
        f".g.json.{other_host}-{dead}-00000010.tmp": (None, False),  # another host: only age tells
        f".g.json.{other_host}-{dead}-00000011.tmp": (day_ago, True),
        ".g.npz.ab_cd123.tmp": (None, False),  # an older graphc's temporary name: only age tells
        ".g.npz.ab_cd124.tmp": (day_ago, True),
        ".g.json.abcd1234.tmp": (day_ago, True),
        "g.npz": (day_ago, False),  # could be anything: only removed when the old JSON names it
        "g.json.notes.npz": (day_ago, False),
        f".h.json.{host}-{dead}-00000012.tmp": (day_ago, False),  # another target's
        f"h.json.{host}-{dead}-00000013.npz": (day_ago, False),
    }
    for name, (age, _) in cases.items():
        (tmp_path / name).write_bytes(b"x")
        if age is not None:
            os.utime(tmp_path / name, (age, age))
    with atomic.writing() as tag:  # a save of this process in flight (another thread's, say)
        (tmp_path / f".g.json.{tag}.tmp").write_bytes(b"x")
        save_graph(g, path)
        assert (tmp_path / f".g.json.{tag}.tmp").exists()
    assert listing(tmp_path) == sorted(
        ["g.json", arrays_file(path).name, f".g.json.{tag}.tmp"] + [n for n, (_, gone) in cases.items() if not gone]
    )
    save_graph(g, path)  # that save has finished now
    assert not (tmp_path / f".g.json.{tag}.tmp").exists()
    assert same(load_graph(path), g)


@pytest.mark.parametrize("trial", range(4))
def test_concurrent_saves_leave_one_whole_graph_and_no_leftovers(tmp_path, trial):
    # Without atomic.exclusive, one save's clean-up removed the arrays of a save committed after it
    # (about 1 run in 8 of six threads saving ten times each).
    path = tmp_path / "g.json"
    graphs = [make_graph(seed, "g") for seed in range(6)]
    errors = []

    def saves(g):
        try:
            for _ in range(10):
                save_graph(g, path)
        except Exception as exc:  # reported below; a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=saves, args=(g,)) for g in graphs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = load_graph(path)
    assert any(same(got, g) for g in graphs)
    save_graph(graphs[0], path)  # (a save that overlapped the last ones may have left files in use then)
    assert listing(tmp_path) == ["g.json", arrays_file(path).name]


def test_an_older_graphcs_file_is_replaced_cleanly(tmp_path):
    """A graph file with the old sidecar name (g.npz) loads, and saving over it removes g.npz."""
    g = make_graph(1, "g")
    path = tmp_path / "g.json"
    save_graph(g, path)
    os.replace(arrays_file(path), tmp_path / "g.npz")
    path.write_text(path.read_text().replace(f'"arrays": "{arrays_file(path).name}"', '"arrays": "g.npz"'))
    assert same(load_graph(path), g)
    save_graph(make_graph(2, "g"), path)
    assert listing(tmp_path) == ["g.json", arrays_file(path).name]


def test_a_save_keeps_the_files_permissions(tmp_path):
    path = tmp_path / "g.json"
    save_graph(make_graph(1, "g"), path)
    os.chmod(path, 0o600)
    os.chmod(arrays_file(path), 0o640)
    save_graph(make_graph(2, "g"), path)
    assert (path.stat().st_mode & 0o777, arrays_file(path).stat().st_mode & 0o777) == (0o600, 0o640)


# -- write failures --------------------------------------------------------------------------


def test_saving_into_a_missing_folder_creates_it(tmp_path, monkeypatch):
    g = make_graph(1, "g")
    monkeypatch.chdir(tmp_path)
    g.save("saved/deeper/g.json")
    assert same(gc.Graph.load("saved/deeper/g.json"), g)
    assert listing(tmp_path / "saved" / "deeper") == ["g.json", arrays_file(tmp_path / "saved/deeper/g.json").name]


def test_saving_under_a_file_names_the_target_and_the_file(tmp_path):
    (tmp_path / "f").write_text("x")
    target = tmp_path / "f" / "sub" / "g.json"
    with pytest.raises(FileWriteError) as info:
        make_graph(1, "g").save(target)
    assert (
        str(info.value) == f"cannot write graph file {str(target)!r}: {str(tmp_path / 'f')!r} is a file, not a folder"
    )
    assert info.value.errno == errno.ENOTDIR and isinstance(info.value, GraphFileError | OSError)
    assert listing(tmp_path) == ["f"]


def test_saving_to_a_folder_is_refused_before_writing(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(GraphFileError, match=r"cannot save a graph to '.*/d': it is a folder"):
        make_graph(1, "g").save(tmp_path / "d")
    assert listing(tmp_path) == ["d"] and listing(tmp_path / "d") == []


@pytest.fixture
def previous(tmp_path):
    """A saved graph whose save is then attempted again with another graph."""
    path = tmp_path / "g.json"
    save_graph(make_graph(1, "old"), path)
    return path


def check_untouched(path, before, info, reason):
    assert str(info.value) == f"cannot write graph file {str(path)!r}: {reason}"  # the target, not a temp file
    assert info.value.__cause__ is None
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == before  # no temp or arrays file left
    assert same(load_graph(path), make_graph(1, "old"))


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_a_read_only_place_gives_a_file_write_error(previous, monkeypatch, code):
    before = {p.name: p.read_bytes() for p in previous.parent.iterdir()}
    real_open = os.open

    def read_only(file, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), file)
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(FileWriteError) as info:
        save_graph(make_graph(2, "new"), previous)
    monkeypatch.undo()
    assert info.value.errno == code
    check_untouched(previous, before, info, os.strerror(code))


@pytest.mark.parametrize("failing", [1, 2], ids=["arrays", "json"])
def test_a_full_disk_gives_a_file_write_error(previous, monkeypatch, failing):
    before = {p.name: p.read_bytes() for p in previous.parent.iterdir()}
    real_fsync, calls = os.fsync, []

    def full(fd):
        calls.append(fd)
        if len(calls) == failing:  # the arrays file is synced first, then the JSON's temporary file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(FileWriteError) as info:
        save_graph(make_graph(2, "new"), previous)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    check_untouched(previous, before, info, "No space left on device")


def test_an_interrupted_save_leaves_nothing_behind(previous, monkeypatch):
    before = {p.name: p.read_bytes() for p in previous.parent.iterdir()}

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):  # not turned into an error of ours, and cleaned up
        save_graph(make_graph(2, "new"), previous)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in previous.parent.iterdir()} == before
