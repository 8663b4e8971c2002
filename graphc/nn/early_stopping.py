"""Early stopping: when fit stops, and what it monitors."""

from dataclasses import dataclass

from graphc.errors import InputError


@dataclass
class EarlyStopping:
    """Stop when `monitor` (default: val_loss, or loss without validation data) has not improved
    by more than `min_delta` for `patience` epochs; then restore the best epoch's weights."""

    patience: int = 5
    monitor: str | None = None
    min_delta: float = 0.0
    restore_best: bool = True


def resolve_early_stopping(spec, has_val: bool) -> "EarlyStopping | None":
    """fit's early_stopping argument (None/False, a patience, or an EarlyStopping) resolved."""
    if spec is None or spec is False:
        return None
    if isinstance(spec, bool) or not isinstance(spec, int | EarlyStopping):
        raise InputError(f"fit: early_stopping must be a patience (int) or EarlyStopping, got {spec!r}")
    stop = EarlyStopping(patience=spec) if isinstance(spec, int) else EarlyStopping(**vars(spec))
    if stop.patience < 1:
        raise InputError(f"fit: early stopping patience must be >= 1, got {stop.patience}")
    if stop.monitor is None:
        stop.monitor = "val_loss" if has_val else "loss"
    if stop.monitor.startswith("val_") and not has_val:
        raise InputError(f"fit: early stopping monitors {stop.monitor!r} but no validation data was given")
    return stop
