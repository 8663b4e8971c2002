"""What every `graphc demo` task writes and prints about it: the training step's drawings and the
`wrote FILE` lines."""

from pathlib import Path


def draw_training_step(model, out_dir: Path) -> list[Path]:
    """forward.svg and backward.svg of the model's training step, and train.svg, the whole step
    collapsed to one box per layer (gc.render's view="train", collapse=True).

    With a fusing backend (numba) the forward and backward drawings are of the compiled graph
    with its kernels as clusters; otherwise of the declared graph with name scopes as clusters.
    """
    import graphc as gc

    step = model.train_step
    kernels = getattr(step, "kernels", None)
    g = getattr(step, "graph", model.graph) if kernels is not None else model.graph
    roots = [g.outputs["train/loss"], *g.updates.values()]
    files = []
    for part in ("forward", "backward"):
        path, title = out_dir / f"{part}.svg", f"{g.name}: {part} graph of the training step"
        files += gc.render(g, path, roots=roots, part=part, kernels=kernels, title=title)
    title = f"{g.name}: the training step, one box per layer"
    files += gc.render(step, out_dir / "train.svg", view="train", collapse=True, title=title)
    return files


def report_files(files, say=print) -> None:
    """`wrote FILE` for each file written; a drawing's .gv source only where no image was made
    from it (no `dot`)."""
    images = {Path(f).with_suffix("") for f in files if Path(f).suffix != ".gv"}
    for f in files:
        if Path(f).suffix != ".gv" or Path(f).with_suffix("") not in images:  # a .gv alone: no `dot`
            say(f"wrote {f}")
