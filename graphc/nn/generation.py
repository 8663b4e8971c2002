"""Generation from a trained stateful sequence model: a compiled step that carries the state,
and a seeded sampler with temperature and top-k.

    model = nn.Model(nn.Sequential([nn.Embedding(V, 16), nn.GRU(64, return_sequences=True), nn.Dense(V)]),
                     input_shape=(None,), input_dtype="int32", stateful=True)
    model.fit(X, y, bptt=32)
    text = nn.generate(model, "def ", 200, temperature=0.8, top_k=10, seed=0, vocab=vocab)

`Stepper` also steps a forecaster (float inputs, outputs at every step), e.g. to feed its
predictions back. The step is the model's evaluation graph (graphc.nn.model_graph: `eval/output` and the final
state `eval/state/...`), compiled once; its time axis is symbolic, so the same compiled graph
takes the whole prompt in one call and then one id per call, each call starting from the
state the one before it ended with.
"""

import numpy as np

from graphc.errors import AttributeValueError, InputError
from graphc.nn.data import check_int, convert
from graphc.nn.model_graph import LENGTHS

__all__ = ["Stepper", "generate", "sample"]


class Stepper:
    """model's network run step by step, its recurrent state kept between calls.

    `stepper(x)` feeds x (batch, t, ...) (t >= 1: a prompt at once, or one step; token ids
    (batch, t) for a model of ids) and returns the network's output at the last step (logits
    (batch, classes) for a classifier of every step; the raw outputs, not probabilities);
    `reset(batch)` starts again from the zero state; `state` holds the current state
    ({input name: array}). The model must be stateful, with outputs at every step."""

    def __init__(self, model, batch: int = 1, owner: str = "Stepper"):
        import graphc as gc

        seq = model.sequences
        if not seq.stateful:
            raise AttributeValueError(f"{owner}: the model was built without stateful=True; its compiled step "
                                      "cannot carry the recurrent state from one call to the next")  # fmt: skip
        x, out = model.graph.inputs["x"], model.graph.outputs["eval/output"]
        tokens = x.ndim == 2 and x.dtype.startswith("int") and seq.per_step
        if not seq.along_time or (owner == "generate" and not tokens):
            want = "a model of token ids, input (batch, time) integers" if owner == "generate" else "a model"
            raise AttributeValueError(
                f"{owner}: needs {want} with outputs at every step (batch, time, ...); this one takes {x.type_str} "
                f"and gives {out.type_str}"
            )
        self.model, self.seq, self.x = model, seq, x
        self.num_classes = model.num_classes if tokens else None
        outputs = ["eval/output", *seq.state_outputs("eval")]
        self._step = gc.compile(model.graph, backend=model.backend, outputs=outputs, apply_updates=False)
        self.reset(batch)

    def reset(self, batch: int = 1) -> None:
        check_int("Stepper.reset", "batch", batch, 1)
        self.state = self.seq.zero_state(batch)

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x)
        batch = len(next(iter(self.state.values())))
        features = tuple(self.x.shape[2:])
        want = f"({batch}, t{''.join(f', {d}' for d in features)})"
        if x.ndim != 2 + len(features) or x.shape[0] != batch or x.shape[2:] != features or x.shape[1] < 1:
            raise InputError(f"Stepper: x must have shape {want} with t >= 1, got {x.shape}")
        if self.num_classes is not None:
            if x.dtype.kind not in "iu":
                raise InputError(f"Stepper: token ids must be integers, got {x.dtype}")
            bad = np.flatnonzero((x < 0) | (x >= self.num_classes))
            if len(bad):
                raise InputError(
                    f"Stepper: id {int(x.reshape(-1)[bad[0]])} is outside the model's {self.num_classes} classes "
                    f"(0..{self.num_classes - 1})"
                )
        feeds = {"x": convert(x, self.x.dtype, "x", "Stepper"), **self.state}
        if self.seq.has_lengths:
            feeds[LENGTHS] = np.full(batch, x.shape[1], np.int32)
        logits, *state = self._step(**feeds)
        self.state = dict(zip(self.seq.state, state))
        return np.asarray(logits)[:, -1]


def sample(logits, rng: np.random.Generator, temperature: float = 1.0, top_k: int | None = None) -> int:
    """One id drawn from softmax(logits / temperature) over the `top_k` largest logits (all if
    None); temperature 0 takes the largest (greedy)."""
    logits = np.asarray(logits, np.float64).reshape(-1)
    if temperature == 0:
        return int(np.argmax(logits))
    if top_k is not None and top_k < len(logits):
        cut = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits >= cut, logits, -np.inf)
    z = (logits - logits.max()) / temperature
    p = np.exp(z)
    return int(rng.choice(len(p), p=p / p.sum()))


def generate(model, prompt, length: int, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
             vocab=None):  # fmt: skip
    """`length` ids sampled one at a time after `prompt`, each fed back as the next input.

    prompt: a non-empty sequence of ids, or a string when `vocab` is given (an object with
    encode(text) -> ids and decode(ids) -> text, such as graphc.datasets_sequences.CharVocab;
    characters it does not know are an InputError); the result is then a string too.
    temperature > 0 (0: greedy); top_k: sample among the k likeliest ids. The same seed gives
    the same sequence."""
    check_int("generate", "length", length, 0)
    if seed is not None:
        check_int("generate", "seed", seed)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature >= 0:
        raise AttributeValueError(f"generate: temperature must be a number >= 0, got {temperature!r}")
    if top_k is not None:
        check_int("generate", "top_k", top_k, 1)
    if isinstance(prompt, str):
        if vocab is None:
            raise InputError("generate: a text prompt needs vocab= (an object with encode and decode)")
        try:
            ids = np.asarray(vocab.encode(prompt))
        except (InputError, KeyError) as exc:  # KeyError: a plain dict-based vocabulary
            raise InputError(f"generate: the prompt {prompt[:40]!r} has characters the vocabulary does not know: "
                             f"{exc}") from None  # fmt: skip
    else:
        ids = np.asarray(prompt)
    if ids.ndim != 1 or len(ids) == 0 or ids.dtype.kind not in "iu":
        raise InputError(f"generate: prompt must be a non-empty 1-D sequence of ids, got {ids.dtype} {ids.shape}")
    stepper = Stepper(model, owner="generate")
    rng = np.random.default_rng(seed)
    logits = stepper(ids[None, :])
    out = []
    for _ in range(length):
        out.append(sample(logits[0], rng, float(temperature), top_k))
        logits = stepper(np.array([[out[-1]]]))
    out = np.asarray(out, np.int64)
    return vocab.decode(out) if vocab is not None and isinstance(prompt, str) else out
