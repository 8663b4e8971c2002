"""Model: a network, a loss and an optimizer compiled into one training step and one evaluation.

    model = nn.Model(net, input_shape=(1, 8, 8), loss="cross_entropy", optimizer=nn.optim.Adam(1e-3))
    history = model.fit(X, y, epochs=10, batch_size=32, validation_split=0.2, early_stopping=3)
    model.evaluate(Xte, yte)   # {"loss": ..., "accuracy": ...}
    model.predict(Xte)         # class probabilities (softmax / sigmoid); regression outputs as is
    model.save("ckpt"); model = nn.Model.load("ckpt")

One graph holds the training step (forward with dropout and batch statistics, loss, metrics,
backward and the optimizer's updates) and the evaluation outputs (dropout off, running
statistics), both reading the same parameters. Its named outputs are `train/loss`,
`train/<metric>`, `eval/loss`, `eval/<metric>`, `eval/output` (logits) and `eval/predictions`;
with distributed=True also `distributed/loss` (the global batch's loss, after the all-reduce);
with stateful=True also `train/state/...` and `eval/state/...` (graphc/nn/model_graph.py).
"""

import math

import numpy as np

from graphc.distributed.gradients import GLOBAL_LOSS
from graphc.distributed.sharding import shard_range
from graphc.errors import AttributeValueError, GraphFileError, InputError, TrainingError
from graphc.ir.graph import Graph
from graphc.nn.data import Batches, check_int, check_labels, check_samples, split_validation
from graphc.nn.early_stopping import resolve_early_stopping
from graphc.nn.heads import LOSSES  # noqa: F401  (the losses by name, read from here by docs tests)
from graphc.nn.history import History
from graphc.nn.model_graph import LENGTHS, SHARD_WEIGHT, build_model_graph, check_head
from graphc.nn.sequences import SequenceData


def default_backend() -> str:
    """'numba' when that backend is available, else 'reference'."""
    from graphc.backends import backend_names

    return "numba" if "numba" in backend_names() else "reference"


def _optimizer(opt):
    from graphc.nn import optim

    return optim.Adam() if opt is None else optim.get(opt)


class Model:
    """A compiled network with fit / evaluate / predict / save.

    loss: "cross_entropy" (the network outputs logits (batch, classes); the targets are class
    labels, or with targets="probabilities" probability rows), "binary_cross_entropy" (targets
    in [0, 1]; one logit per target) or "mse" (float targets).
    targets (cross_entropy only): "labels" (default: fit/evaluate take labels (N,) or (N, 1), or
    one-hot rows (N, classes)) or "probabilities" (they take probability rows (N, classes), or
    labels, which are one-hot encoded).
    optimizer: an nn.optim optimizer or its name ("adam", "sgd", ...); default Adam(1e-3).
    metrics: default ("accuracy",) for the classification losses, none for mse. backend: "numba" when
    available, else "reference"; any registered backend name.
    distributed: data-parallel training over the ranks of graphc.distributed.world() (under
    `mpiexec`; a world of one otherwise): each rank trains on its shard of every batch, the
    gradients are all-reduced in the training step, rank 0 alone prints and writes files, and
    evaluate/predict are sharded and gathered. See docs/distributed.md.
    Sequences (docs/nn.md, "Sequence training and generation"): a None in input_shape is the
    time axis, of any length; lengths=True adds a lengths input (fit/evaluate/predict take
    lengths=L, int (N,)); stateful=True carries the recurrent layers' state between calls
    (fit/evaluate/predict take bptt=k: windows of k steps; nn.generate steps it).
    """

    def __init__(
        self, net, input_shape, loss: str = "cross_entropy", optimizer=None, metrics=None,
        backend: str | None = None, seed: int = 0, name: str = "model", input_dtype: str = "float32",
        targets: str = "labels", distributed: bool = False, lengths: bool = False, stateful: bool = False,
    ):  # fmt: skip
        from graphc import nn

        metrics = check_head(loss, targets, metrics)
        check_int("Model", "seed", seed)
        if isinstance(input_shape, int):
            input_shape = (input_shape,)
        self.optimizer = _optimizer(optimizer)
        g, weight = build_model_graph(net, name, seed, input_shape, input_dtype, loss, targets, metrics, lengths,
                                      stateful, distributed)  # fmt: skip
        training = nn.training_graph(g.outputs["train/loss"], self.optimizer, distributed=bool(distributed),
                                     weight=weight)  # fmt: skip
        state = set(getattr(training, "state_names", ()) or ())
        self.net = net
        self._setup(g, {
            "name": name, "loss": loss, "metrics": list(metrics), "input_shape": list(input_shape),
            "input_dtype": input_dtype, "seed": int(seed), "optimizer": self.optimizer.config,
            "optimizer_state": sorted(state), "backend": None, "targets": targets,
            "distributed": bool(distributed), "lengths": lengths, "stateful": stateful,
        }, backend)  # fmt: skip

    def _setup(self, graph: Graph, config: dict, backend: str | None) -> None:
        import graphc as gc

        self.graph, self.config = graph, config
        self.loss, self.metrics = config["loss"], tuple(config["metrics"])
        self.input_shape = tuple(config["input_shape"])
        y = graph.inputs["y"]
        self.target_shape = tuple(y.shape[1:])
        out = graph.outputs["eval/output"]
        self.num_classes = int(out.shape[-1]) if self.loss == "cross_entropy" else None
        self.sequences = SequenceData(graph)
        # Checkpoints from before `targets` existed hold a label model.
        self.targets = config.get("targets") or ("labels" if y.dtype.startswith("int") else "probabilities")
        if backend is None and config.get("backend"):
            from graphc.backends import backend_names

            # A loaded model runs where it was saved from, unless that backend is missing here.
            backend = config["backend"] if config["backend"] in backend_names() else None
        self.backend = backend or default_backend()
        config["backend"] = self.backend
        # Values early stopping snapshots and restores: the weights and running statistics,
        # not the optimizer's moments (as in Keras' restore_best_weights).
        self._weight_names = [k for k in graph.values if k not in set(config["optimizer_state"])]
        from graphc.distributed import World, init

        self.world = init() if config.get("distributed") else World()  # a world of one: no MPI
        step_graph, train_outputs = graph, self._names("train")
        if self.world.size > 1:
            from graphc.distributed.checks import check_same
            from graphc.distributed.seeds import per_rank_graph

            check_same(self.world, graph)  # same graphc, model and initial parameters everywhere
            step_graph = per_rank_graph(graph, self.world.rank, self.world.size)  # own dropout masks
        if GLOBAL_LOSS in graph.outputs:
            train_outputs.append(GLOBAL_LOSS)  # the global batch's loss, the same on every rank
        self._train = gc.compile(step_graph, backend=self.backend, outputs=train_outputs, apply_updates=True)
        self._eval_fn = None
        self._predict_fn = None
        self.epoch = 0  # epochs trained so far (continues across fit calls and checkpoints)
        self.history = History()

    def _names(self, prefix):
        """The step's outputs: loss, metrics, then a stateful model's final state."""
        return [f"{prefix}/loss", *(f"{prefix}/{m}" for m in self.metrics), *self.sequences.state_outputs(prefix)]

    @property
    def _evaluate(self):
        import graphc as gc

        if self._eval_fn is None:
            self._eval_fn = gc.compile(self.graph, backend=self.backend, outputs=self._names("eval"),
                                       apply_updates=False)  # fmt: skip
        return self._eval_fn

    @property
    def _predict(self):
        import graphc as gc

        if self._predict_fn is None:
            outputs = ["eval/predictions", "eval/output", *self.sequences.state_outputs("eval")]
            self._predict_fn = gc.compile(self.graph, backend=self.backend, outputs=outputs, apply_updates=False)
        return self._predict_fn

    @property
    def step(self) -> int:
        """Training steps run so far (random ops such as dropout are seeded by it)."""
        return self._train.step

    @property
    def train_step(self):
        """The compiled training step (an Executable): its `.graph` is what runs and, on a fusing
        backend, `.kernels` its fused kernels (what `graphc demo` draws). Calling it trains."""
        return self._train

    def summary(self) -> str:
        """The layers as a table (name scope and class, output shape, parameter count) with the
        totals of trainable and non-trainable parameters, like Keras's (print it)."""
        from graphc.nn.summary import model_summary

        return model_summary(self)

    # -- data ---------------------------------------------------------------------------------
    def _check(self, X, y, what, lengths=None):
        """(X, y, {"lengths": L} or {}) checked and converted to the graph's inputs; InputError says
        what is expected."""
        X = check_samples(X, self.input_shape, self.config["input_dtype"], what)
        extra = self.sequences.extra(X, lengths, what)
        if y is None:
            return X, None, extra
        y_dtype = self.graph.inputs["y"].dtype
        if self.sequences.per_step:
            return X, self.sequences.labels(y, X, extra, self.num_classes, what), extra
        if self.loss == "cross_entropy":
            probs = self.targets == "probabilities"
            y = check_labels(y, len(X), self.num_classes, what, probabilities=probs)
            return X, np.ascontiguousarray(y, dtype=y_dtype), extra
        y = self.sequences.targets(y, X, self.target_shape, y_dtype, what)
        if self.loss == "binary_cross_entropy":
            bad = np.flatnonzero((y < 0) | (y > 1))
            if len(bad):
                raise InputError(
                    f"{what}: binary_cross_entropy targets must be in [0, 1], got {y.reshape(-1)[bad[0]].item()!r} "
                    f"at {len(bad)} value(s)"
                )
        return X, y, extra

    # -- training -----------------------------------------------------------------------------
    def fit(self, X, y, epochs: int = 1, batch_size: int = 32, validation_split: float = 0.0,
            validation_data=None, early_stopping=None, shuffle: bool = True, seed: int | None = None,
            progress: bool = True, drop_last: bool = False, augment=None,
            initial_epoch: int | None = None, lengths=None, bptt: int | None = None) -> History:  # fmt: skip
        """Train for `epochs` more epochs; returns (and extends) `model.history`.

        `initial_epoch` (as in Keras): resume to a total. With it, `epochs` is the epoch to stop
        at, and `initial_epoch` must be the epochs the model has trained (`model.epoch`, kept in
        checkpoints): `Model.load(ckpt).fit(X, y, epochs=20, initial_epoch=5)` trains epochs 6-20.

        Epoch e shuffles with seed (seed, e), e counting from the model's first epoch, so a run
        resumed from a checkpoint sees the same batches as one that ran straight through.
        `augment`: a callable (batch_X, rng) -> batch_X of the same shape, applied to each
        training batch (not to validation data) with rng = numpy.random.default_rng((seed, e, i))
        for batch i of epoch e, so augmented runs repeat and resume exactly too.
        `early_stopping`: patience (int) or EarlyStopping; the best epoch's weights are restored.
        A NaN or inf loss raises TrainingError naming the epoch and step, after putting back
        the values the model had at the start of that epoch.
        `lengths` (a model built with lengths=True): each sequence's valid steps, int (N,);
        validation_data may then be (X_val, y_val, lengths_val). `bptt=k` (a stateful model):
        truncated backpropagation through time, each batch trained in windows of k steps.
        """
        check_int("fit", "epochs", epochs, 0)
        check_int("fit", "batch_size", batch_size, 1)
        if initial_epoch is not None:
            check_int("fit", "initial_epoch", initial_epoch, 0)
            if initial_epoch != self.epoch:
                raise InputError(
                    f"fit: initial_epoch={initial_epoch}, but the model has trained {self.epoch} epoch(s) "
                    f"(model.epoch); pass initial_epoch={self.epoch} to train to epoch {epochs}"
                )
            if epochs < initial_epoch:
                raise InputError(
                    f"fit: with initial_epoch={initial_epoch}, epochs is the epoch to stop at and must be >= "
                    f"{initial_epoch}, got {epochs}"
                )
            epochs -= initial_epoch
        if augment is not None and not callable(augment):
            raise InputError(f"fit: augment must be a callable (batch_X, rng) -> batch_X, got {augment!r}")
        if seed is not None:
            check_int("fit", "seed", seed)
        seed = self.config["seed"] if seed is None else int(seed)
        self.sequences.check_bptt(bptt, "fit")
        X, y, extra = self._check(X, y, "training data", lengths)
        if validation_data is not None and validation_split:
            raise InputError("fit: pass validation_data or validation_split, not both")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
                raise InputError("fit: validation_data must be a pair (X_val, y_val) or (X_val, y_val, lengths_val)")
            val = self._check(*validation_data[:2], "validation data", *validation_data[2:])
        elif validation_split:
            X, y, Xv, yv = split_validation(X, y, validation_split, seed)
            val = (Xv, yv, {})
            for k, v in list(extra.items()):  # the same permutation: it depends on the length and seed only
                _, extra[k], _, val[2][k] = split_validation(v, v, validation_split, seed)
        batches = Batches(X, y, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                          shard=(self.world.rank, self.world.size), extra=extra)  # fmt: skip
        if self.world.size > 1:
            from graphc.distributed.checks import check_same

            # the values may have changed since the model was built; the shards need the same data everywhere
            check_same(self.world, self.graph, arrays={"training data X": X, "training data y": y})
        stop = resolve_early_stopping(early_stopping, val is not None)
        best = None  # (value, epoch, snapshot)
        wait = 0
        first, last = self.epoch, self.epoch + epochs
        self.history.stop_reason = None
        for e in range(first, last):
            logs = self._train_epoch(batches, e, last, val, progress and self.world.is_root, augment, seed, bptt)
            self.epoch = e + 1
            self.history.append(self.epoch, logs)
            if stop is None:
                continue
            value = logs[stop.monitor]
            if best is None or value < best[0] - stop.min_delta:
                best, wait = (value, self.epoch, self._snapshot(self._weight_names)), 0
            else:
                wait += 1
                if wait >= stop.patience:
                    self.history.stop_reason = (
                        f"early stopping at epoch {self.epoch}: {stop.monitor} has not improved for "
                        f"{stop.patience} epochs (best {best[0]:.4g} at epoch {best[1]})"
                    )
                    break
        if stop is not None and best is not None and stop.restore_best:
            self._restore(best[2])
            self.history.best_epoch = best[1]
        return self.history

    def _train_epoch(self, batches, e, last, val, progress, augment=None, seed=0, bptt=None) -> dict:
        from tqdm.auto import tqdm

        start, start_step = self._snapshot(self.graph.values), self._train.step
        names = ["loss", *self.metrics]
        sums = np.zeros(len(names))
        seen = 0
        bar = tqdm(total=len(batches), desc=f"epoch {e + 1}/{last}", unit="batch", disable=not progress,
                   leave=True, dynamic_ncols=True)  # fmt: skip
        try:
            for i, (xb, yb, extra) in enumerate(batches.epoch_feeds(e)):
                if augment is not None:
                    rank = (self.world.rank,) if self.world.size > 1 else ()  # each rank its own draws
                    xb = self._augmented(augment, xb, np.random.default_rng((seed, e, i, *rank)))
                feeds = {SHARD_WEIGHT: len(xb)} if SHARD_WEIGHT in self.graph.inputs else {}
                vals = self.sequences.run(self._train, xb, yb, {**extra, **feeds}, bptt, len(names))
                if not math.isfinite(vals[-1]):  # the global loss when distributed: every rank stops here
                    where_ = self._nonfinite_ranks(vals[0])
                    global_step = self._train.step
                    self._restore(start)
                    self._train.step = start_step
                    raise TrainingError(
                        f"training stopped: the loss became {vals[-1]}{where_} at epoch {e + 1}, step {i + 1} of "
                        f"{len(batches)} (global step {global_step}); the model was reset to its values "
                        "at the start of that epoch. Lower the learning rate, clip gradients (clip_norm=...) "
                        "or check the data.",
                        epoch=e + 1, step=i + 1, history=self.history,
                    )  # fmt: skip
                sums += np.asarray(vals[: len(names)]) * len(xb)
                seen += len(xb)
                bar.update(1)
                bar.set_postfix({k: f"{s / seen:.4f}" for k, s in zip(names, sums)}, refresh=False)
            if self.world.size > 1:  # the epoch's means over every rank's samples
                *sums, seen = self.world.sum([*sums, seen])
            logs = {k: float(s / seen) for k, s in zip(names, sums)}
            if val is not None:
                scores = self.evaluate(val[0], val[1], lengths=val[2].get(LENGTHS), bptt=bptt)
                logs.update({f"val_{k}": v for k, v in scores.items()})
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
        finally:
            bar.close()
        return logs

    def _nonfinite_ranks(self, local_loss: float) -> str:
        """' on rank(s) ...': the ranks whose own loss was not finite (one allgather, on failure only)."""
        if self.world.size == 1:
            return ""
        bad = [r for r, ok in enumerate(self.world.allgather(math.isfinite(local_loss))) if not ok]
        if not bad:
            return f" (every rank's own loss was finite; their mean was not) on {self.world.size} ranks"
        return f" on rank {', '.join(map(str, bad))} of {self.world.size}"

    def _augmented(self, augment, xb, rng) -> np.ndarray:
        out = np.asarray(augment(xb, rng))
        if out.shape != xb.shape:
            raise InputError(f"fit: augment returned shape {out.shape} for a batch of shape {xb.shape}; "
                             "it must keep the batch's shape")  # fmt: skip
        if out.dtype.kind == "f" and not np.isfinite(out).all():
            raise InputError("fit: augment returned NaN or inf values")
        return np.ascontiguousarray(out, dtype=xb.dtype)

    def _snapshot(self, names) -> dict:
        return {k: self.graph.values[k].copy() for k in names}

    def _restore(self, snap: dict) -> None:
        for k, v in snap.items():
            np.copyto(self.graph.values[k], v)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, X, y, batch_size: int = 512, lengths=None, bptt: int | None = None) -> dict:
        """Mean loss and metrics over (X, y), in evaluation mode: {"loss": ..., "accuracy": ...}.
        lengths, bptt: as in fit."""
        check_int("evaluate", "batch_size", batch_size, 1)
        self.sequences.check_bptt(bptt, "evaluate")
        X, y, extra = self._check(X, y, "evaluation data", lengths)
        names = ["loss", *self.metrics]
        sums = np.zeros(len(names))
        lo, hi = shard_range(len(X), self.world)  # each rank evaluates its part; sums all-reduced
        for s in range(lo, hi, batch_size):
            part = slice(s, min(s + batch_size, hi))
            feeds = {k: v[part] for k, v in extra.items()}
            vals = self.sequences.run(self._evaluate, X[part], y[part], feeds, bptt, len(names))
            sums += np.asarray(vals) * (part.stop - part.start)
        if self.world.size > 1:
            sums = self.world.sum(sums)
        return {k: float(v / len(X)) for k, v in zip(names, sums)}

    def predict(self, X, batch_size: int = 512, logits: bool = False, lengths=None, bptt=None) -> np.ndarray:
        """Predictions in evaluation mode.

        cross_entropy: class probabilities (N, classes) (softmax); binary_cross_entropy: the
        probability of 1 (sigmoid), shaped like the output; mse: the outputs. With
        `logits=True`, the network's raw outputs instead. lengths, bptt: as in fit.
        """
        check_int("predict", "batch_size", batch_size, 1)
        self.sequences.check_bptt(bptt, "predict", per_step_only=False)
        X, _, extra = self._check(X, None, "prediction data", lengths)
        lo, hi = shard_range(len(X), self.world)  # each rank predicts its part; gathered in order
        parts = []
        for s in range(lo, hi, batch_size):
            part = slice(s, min(s + batch_size, hi))
            feeds = {k: v[part] for k, v in extra.items()}
            parts.append(self.sequences.predict(self._predict, X[part], feeds, bptt, 2)[1 if logits else 0])
        if self.world.size == 1:
            return np.concatenate(parts)
        return self.world.gather_rows(np.concatenate(parts) if parts else np.empty((0,), np.float32))

    def predict_classes(self, X, batch_size: int = 512, **sequences) -> np.ndarray:
        """Predicted labels: argmax for cross_entropy, probability > 0.5 for binary_cross_entropy."""
        if self.loss == "mse":
            raise AttributeValueError("predict_classes: a model trained with 'mse' has no classes")
        p = self.predict(X, batch_size, **sequences)
        return p.argmax(axis=-1) if self.loss == "cross_entropy" else (p > 0.5).astype(np.int64)

    def plot_history(self, path, title: str | None = None):
        """Write training and validation curves (one panel per metric) as a PNG (rank 0 alone writes)."""
        return self._on_root(lambda: self.history.plot(path, title=title or self.graph.name), path)

    # -- checkpoints --------------------------------------------------------------------------
    def save(self, path):
        """Save graph, parameters, optimizer state and training position to directory `path`."""
        from graphc.io.checkpoint import save_checkpoint

        training = {"epoch": self.epoch, "step": self._train.step, "history": self.history.to_dict()}
        meta = {"model": self.config, "training": training}
        return self._on_root(lambda: save_checkpoint(path, self.graph, meta), path)

    def _on_root(self, write, path):
        """Run `write` on rank 0 alone (the others wait for it); a failure there raises on every rank."""
        if self.world.size == 1:
            return write()
        from pathlib import Path

        from graphc.errors import DistributedError

        result, outcome, error = None, None, None
        if self.world.is_root:
            try:
                result = write()
                outcome = (None, str(result))
            except Exception as exc:  # told to every rank below, then raised here as it was
                error, outcome = exc, (f"{type(exc).__name__}: {exc}", None)
        failure, written = self.world.bcast(outcome)
        if failure is not None:
            if error is not None:
                raise error
            raise DistributedError(f"rank 0 could not write {str(path)!r}: {failure}")
        return result if self.world.is_root else Path(written)

    def load_weights(self, path) -> "Model":
        """Load a checkpoint's values into this model; GraphFileError lists every mismatch."""
        from graphc.io.checkpoint import load_checkpoint, restore_values

        ckpt = load_checkpoint(path)
        restore_values(self.graph, ckpt.values, f"checkpoint {str(path)!r}")
        self._resume(ckpt.meta)
        return self

    def _resume(self, meta: dict) -> None:
        tr = meta.get("training", {})
        self.epoch = int(tr.get("epoch", 0))
        self._train.step = int(tr.get("step", 0))
        self.history = History.from_dict(tr.get("history", {}))

    @classmethod
    def load(cls, path, backend: str | None = None, distributed: bool | None = None) -> "Model":
        """Rebuild a saved model from its checkpoint alone (the graph carries the optimizer).

        backend: default, the one it was saved with (when available here). distributed: default,
        as it was saved; a distributed model's checkpoint resumes on any number of ranks (its
        graph holds no world size), and with distributed=False as a single process."""
        from graphc.io.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        config = ckpt.meta.get("model")
        if not isinstance(config, dict) or any(k not in config for k in ("loss", "metrics", "input_shape")):
            raise GraphFileError(f"checkpoint {str(path)!r} was not saved by Model.save (no model configuration)")
        graph = ckpt.graph()
        missing = [k for k in ("x", "y") if k not in graph.inputs]
        missing += [k for k in ("train/loss", "eval/loss", "eval/output", "eval/predictions") if k not in graph.outputs]
        if missing:
            raise GraphFileError(f"checkpoint {str(path)!r}: its graph lacks {', '.join(missing)}")
        if distributed is not None:
            if distributed and GLOBAL_LOSS not in graph.outputs:
                raise GraphFileError(f"checkpoint {str(path)!r} holds a model built without distributed=True; "
                                     "its training step has no gradient all-reduce")  # fmt: skip
            config = {**config, "distributed": bool(distributed)}
        model = cls.__new__(cls)
        model.net, model.optimizer = None, None
        model._setup(graph, config, backend)
        model._resume(ckpt.meta)
        return model

    def _repr_mimebundle_(self, include=None, exclude=None):
        """Jupyter's display: the training step drawn (SVG with Graphviz's dot), else the text form."""
        from graphc.ir.graph import display_bundle

        return display_bundle(self, include, exclude)

    def __repr__(self):
        return (f"<Model {self.graph.name!r}: loss={self.loss}, backend={self.backend}, "
                f"{len(self.graph.trainable())} parameters, {self.epoch} epochs>")  # fmt: skip
