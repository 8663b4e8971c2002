"""Per-epoch training history, and the PNG of training and validation curves."""

import math
from pathlib import Path


class History:
    """What fit() recorded, one value per epoch: `history["loss"]`, `history["val_accuracy"]`, ...

    `epochs` holds the epoch numbers (1-based, continuing across fit calls and resumes);
    `best_epoch` is the epoch early stopping restored (None when it did not), and
    `stop_reason` says why training ended early (None when it ran all its epochs).
    """

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self.best_epoch: int | None = None
        self.stop_reason: str | None = None

    def append(self, epoch: int, logs: dict) -> None:
        for key in logs:
            if key not in self.history:
                # A key first seen late (validation added on a second fit) is padded with NaN.
                self.history[key] = [math.nan] * len(self.epochs)
        for key, col in self.history.items():
            col.append(float(logs.get(key, math.nan)))
        self.epochs.append(int(epoch))

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key) -> bool:
        return key in self.history

    def __len__(self) -> int:
        return len(self.epochs)

    def last(self) -> dict:
        return {k: v[-1] for k, v in self.history.items()} if self.epochs else {}

    def to_dict(self) -> dict:
        """JSON-able form (NaN as None), for checkpoints."""
        clean = {k: [None if math.isnan(x) else x for x in v] for k, v in self.history.items()}
        return {"epochs": self.epochs, "history": clean, "best_epoch": self.best_epoch, "stop_reason": self.stop_reason}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        h = cls()
        h.epochs = [int(e) for e in d.get("epochs", [])]
        h.history = {k: [math.nan if x is None else float(x) for x in v] for k, v in d.get("history", {}).items()}
        h.best_epoch, h.stop_reason = d.get("best_epoch"), d.get("stop_reason")
        return h

    def plot(self, path, title: str | None = None) -> Path:
        """Write the training and validation curves as a PNG; returns the path."""
        return plot_histories(path, {"": self}, title=title)

    def __repr__(self):
        last = ", ".join(f"{k}={v:.4g}" for k, v in self.last().items())
        return f"<History {len(self)} epochs: {last}>"


def _metric_names(histories) -> list[str]:
    names = []
    for h in histories:
        for k in h.history:
            base = k[4:] if k.startswith("val_") else k
            if base not in names:
                names.append(base)
    return names


def plot_histories(path, histories: dict, title: str | None = None, metrics=None) -> Path:
    """One panel per metric (loss first); per run, training solid and validation dashed.

    `histories` maps a run label ("" for a single run) to its History. The epoch that early
    stopping restored is marked with a dotted vertical line.
    """
    path = Path(path)
    fig = history_figure(histories, title=title, metrics=metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path


def history_figure(histories: dict, title: str | None = None, metrics=None):
    """The matplotlib Figure that plot_histories writes (epoch ticks are whole numbers)."""
    # Figure without pyplot: renders with Agg, needs no display and leaves global state alone.
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metrics = list(metrics or _metric_names(histories.values()))
    if not metrics:
        raise ValueError("plot_histories: the histories hold no epochs yet; train first")
    fig = Figure(figsize=(5 * len(metrics), 3.8))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics):
        for i, (label, h) in enumerate(histories.items()):
            c = colours[i % len(colours)]
            prefix = f"{label} " if label else ""
            if metric in h.history:
                ax.plot(h.epochs, h.history[metric], "-", color=c, label=f"{prefix}training")
            if f"val_{metric}" in h.history:
                ax.plot(h.epochs, h.history[f"val_{metric}"], "--", color=c, label=f"{prefix}validation")
            if h.best_epoch is not None:
                ax.axvline(
                    h.best_epoch, color=c, linestyle=":", linewidth=1, label=f"{prefix}restored (epoch {h.best_epoch})"
                )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
