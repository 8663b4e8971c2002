"""Generation: the compiled step carries the state between calls (prompt at once = one id at a
time = the whole sequence through predict; numba = reference), seeded sampling with temperature
and top-k, text prompts through a character vocabulary, and the errors."""

import numpy as np
import pytest

from graphc import nn
from graphc.datasets_sequences import CharVocab
from graphc.errors import AttributeValueError, InputError

V = 5


def _model(backend="reference", stateful=True, lengths=False, seed=0):
    net = nn.Sequential([nn.Embedding(V, 4), nn.GRU(8, return_sequences=True), nn.Dense(V)])
    return nn.Model(net, input_shape=(None,), input_dtype="int32", stateful=stateful, lengths=lengths,
                    backend=backend, seed=seed, optimizer=nn.optim.Adam(0.05))  # fmt: skip


def _trained():
    """A model of the cycle 0 -> 1 -> 2 -> 3 -> 4 -> 0 (the next id is the current one plus 1)."""
    model = _model()
    X = np.random.default_rng(0).integers(0, V, (32, 8))
    model.fit(X, (X + 1) % V, epochs=6, batch_size=8, progress=False, bptt=4)
    return model


@pytest.fixture(scope="module")
def trained():
    return _trained()


def test_the_step_carries_the_state_between_calls():
    model = _model(lengths=True)
    ids = np.array([[0, 3, 1, 4, 2, 2]])
    whole = model.predict(ids, logits=True)[:, -1]
    at_once = nn.Stepper(model)(ids)
    one_by_one = nn.Stepper(model)
    for t in range(ids.shape[1]):
        last = one_by_one(ids[:, t : t + 1])
    np.testing.assert_allclose(at_once, whole, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(last, whole, rtol=1e-5, atol=1e-7)
    one_by_one.reset()
    assert not np.allclose(one_by_one(ids[:, -1:]), whole)  # from the zero state, the last id alone differs


def test_compiled_step_matches_the_reference():
    ids = np.array([[1, 2, 0, 4]])
    got = {}
    for backend in ("reference", "numba"):
        stepper = nn.Stepper(_model(backend=backend))
        got[backend] = [stepper(ids[:, t : t + 1]) for t in range(ids.shape[1])]
    np.testing.assert_allclose(got["numba"], got["reference"], rtol=1e-5, atol=1e-7)


def test_sampling_is_seeded_and_greedy_follows_the_learned_cycle(trained):
    assert list(nn.generate(trained, [2], 6, temperature=0)) == [3, 4, 0, 1, 2, 3]
    assert list(nn.generate(trained, [2], 6, top_k=1, seed=5)) == [3, 4, 0, 1, 2, 3]  # top-1 is greedy
    a = nn.generate(trained, [0, 1], 30, temperature=5.0, seed=1)
    np.testing.assert_array_equal(a, nn.generate(trained, [0, 1], 30, temperature=5.0, seed=1))
    assert not np.array_equal(a, nn.generate(trained, [0, 1], 30, temperature=5.0, seed=2))
    assert a.dtype == np.int64 and a.shape == (30,) and set(a) <= set(range(V))
    assert len(set(nn.generate(trained, [0], 40, temperature=1.0, top_k=2, seed=0))) <= V


def test_sample_restricts_to_top_k_and_scales_by_temperature():
    rng = np.random.default_rng(0)
    logits = np.array([0.0, 3.0, 1.0, 2.9])
    draws = [nn.generation.sample(logits, rng, 1.0, top_k=2) for _ in range(200)]
    assert set(draws) == {1, 3}
    cold = [nn.generation.sample(logits, rng, 0.05) for _ in range(50)]
    assert cold.count(1) > 40


def test_text_prompts_through_a_vocabulary(trained):
    vocab = CharVocab("abcde")  # ids 0..4: 'a' -> 'b' -> ... -> 'e' -> 'a'
    assert nn.generate(trained, "ab", 5, temperature=0, vocab=vocab) == "cdeab"
    with pytest.raises(InputError, match=r"generate: the prompt 'abz!' has characters the vocabulary does not know: "
                       r"CharVocab.encode: 2 character\(s\) not in the vocabulary: '!', 'z'"):  # fmt: skip
        nn.generate(trained, "abz!", 5, vocab=vocab)
    with pytest.raises(InputError, match=r"generate: a text prompt needs vocab="):
        nn.generate(trained, "ab", 5)


def test_errors(trained):
    with pytest.raises(AttributeValueError, match=r"generate: the model was built without stateful=True"):
        nn.generate(_model(stateful=False), [1], 3)
    with pytest.raises(AttributeValueError, match=r"generate: temperature must be a number >= 0, got -1"):
        nn.generate(trained, [1], 3, temperature=-1)
    with pytest.raises(InputError, match=r"generate: top_k must be an integer >= 1, got 0"):
        nn.generate(trained, [1], 3, top_k=0)
    with pytest.raises(
        InputError, match=r"generate: prompt must be a non-empty 1-D sequence of ids, got float64 \(0,\)"
    ):
        nn.generate(trained, [], 3)
    with pytest.raises(InputError, match=r"Stepper: id 7 is outside the model's 5 classes \(0..4\)"):
        nn.generate(trained, [1, 7], 3)
    forecaster = nn.Model(nn.Sequential([nn.LSTM(3, return_sequences=True), nn.Dense(1)]), input_shape=(None, 1),
                          loss="mse", stateful=True, backend="reference")  # fmt: skip
    msg = r"generate: needs a model of token ids, input \(batch, time\) integers with outputs at every step"
    with pytest.raises(AttributeValueError, match=msg):
        nn.generate(forecaster, [1], 3)


def test_a_loaded_model_generates_the_same(trained, tmp_path):
    trained.save(tmp_path / "ckpt")
    loaded = nn.Model.load(tmp_path / "ckpt", backend="reference")
    assert loaded.sequences.state == ["state/sequential/gru/h"]
    for kw in ({"temperature": 0}, {"temperature": 2.0, "top_k": 3, "seed": 4}):
        np.testing.assert_array_equal(nn.generate(loaded, [1, 2], 12, **kw), nn.generate(trained, [1, 2], 12, **kw))


def test_a_forecaster_steps_too():
    net = nn.Sequential([nn.LSTM(3, return_sequences=True), nn.Dense(1)])
    model = nn.Model(net, input_shape=(None, 1), loss="mse", stateful=True, backend="reference")
    series = np.sin(np.arange(7.0))[None, :, None]
    stepper = nn.Stepper(model)
    outs = [stepper(series[:, t : t + 1]) for t in range(7)]
    np.testing.assert_allclose(np.concatenate(outs, 0)[:, 0], model.predict(series)[0, :, 0], rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match=r"Stepper: x must have shape \(1, t, 1\) with t >= 1, got \(1, 3\)"):
        stepper(np.zeros((1, 3)))
