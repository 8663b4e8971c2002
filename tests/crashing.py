"""Kill a save at its n-th file operation, in a forked child, with no cleanup (tests of atomic saves)."""

import os

KILLED = 77
STEPS = ("open", "fchmod", "write", "fsync", "close", "replace", "unlink", "mkdir")  # what a save does to files


def run_killed_at(step: int, save, tmp_path) -> bool:
    """Run `save` in a forked child that dies (os._exit, no cleanup) at its `step`-th file
    operation, a write tearing half its bytes; True if it died, False if the save finished."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 3
        try:
            count = [0]

            def wrap(name, real):
                def op(*args, **kwargs):
                    count[0] += 1
                    if count[0] == step:
                        if name == "write":
                            real(args[0], bytes(args[1])[: len(args[1]) // 2])
                        os._exit(KILLED)
                    return real(*args, **kwargs)

                return op

            for name in STEPS:
                setattr(os, name, wrap(name, getattr(os, name)))
            save()
            code = 0
        except BaseException as exc:
            (tmp_path / "child-error.txt").write_text(repr(exc))
        finally:
            os._exit(code)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert code in (0, KILLED), (tmp_path / "child-error.txt").read_text()
    return code == KILLED
