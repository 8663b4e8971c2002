"""The scripts under examples/, loaded as modules for the tests (they are not a package)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def example(name):
    """examples/<name>.py, loaded as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(name, *args):
    """The example's main(args) in a short, seeded, quiet run on the reference backend."""
    return example(name).main([*args, "--backend", "reference", "--quiet", "--seed", "0"])
