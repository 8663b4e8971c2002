"""`graphc demo --task text --out DIR`: a character-level GRU learns the Python standard library's source.

The first 150,000 characters of the installed Python's standard library (whole modules in name
order, graphc.datasets_sequences.read_corpus) train Embedding(32) -> GRU(128) -> Dense on windows
of 64 characters to predict each next character; the last 10% is held out. It prints a sample
from the trained model (nn.generate, temperature 0.8) and, last, the validation bits per
character against the unigram baseline: `validation bits per character: 2.xxx (unigram baseline 4.xxx)`.
Writes DIR/forward.svg, DIR/backward.svg, DIR/train.svg (as the image task) and DIR/curves.png.
"""

import math
import time
from pathlib import Path

import numpy as np

CORPUS_CHARS, SEQ_LEN, UNITS, EMBED = 150_000, 64, 128, 32


def text_demo(
    out: str,
    epochs: int = 3,
    backend: str | None = None,
    seed: int = 0,
    progress: bool = True,
    say=print,
    corpus_chars: int | None = None,
) -> dict:
    """Train the character GRU, sample from it and write its drawings and curves into `out`.

    corpus_chars: characters of the corpus to use (default CORPUS_CHARS)."""
    from graphc import nn
    from graphc.cli.demo_drawing import draw_training_step, report_files
    from graphc.datasets_sequences import CharVocab, next_char_windows, read_corpus, unigram_bits_per_char

    out_dir = Path(out)
    t0 = time.perf_counter()
    text = read_corpus(max_chars=CORPUS_CHARS if corpus_chars is None else corpus_chars)
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    n_val = len(ids) // 10
    X, y = next_char_windows(ids[:-n_val], SEQ_LEN)
    X_val, y_val = next_char_windows(ids[-n_val:], SEQ_LEN)
    X, X_val = X.astype(np.int32), X_val.astype(np.int32)
    V = len(vocab)
    optimizer = nn.optim.Adam(1e-2, clip_norm=1.0, schedule=nn.schedules.CosineDecay(epochs * math.ceil(len(X) / 32)))
    net = nn.Sequential([nn.Embedding(V, EMBED), nn.GRU(UNITS, return_sequences=True), nn.Dense(V)], name="char_gru")
    model = nn.Model(
        net,
        input_shape=(None,),
        input_dtype="int32",
        optimizer=optimizer,
        stateful=True,
        backend=backend,
        seed=seed,
        name="text_gru",
    )
    say(
        f"graphc demo: character GRU on {len(X) * SEQ_LEN} training / {len(X_val) * SEQ_LEN} validation characters "
        f"of the Python standard library ({V} distinct), backend {model.backend}, {epochs} epochs",
        flush=True,
    )
    # drop_last: one batch shape, so one compiled specialisation of the training step
    model.fit(
        X, y, epochs=epochs, batch_size=32, validation_data=(X_val, y_val), seed=seed, progress=progress, drop_last=True
    )
    bpc = model.evaluate(X_val, y_val)["loss"] / math.log(2)
    unigram = unigram_bits_per_char(ids[:-n_val], y_val, V)
    sample = nn.generate(model, "def ", 200, temperature=0.8, seed=seed, vocab=vocab)
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no empty folder behind
    files = draw_training_step(model, out_dir)
    files.append(model.plot_history(out_dir / "curves.png", title="character GRU: training and validation"))
    elapsed = time.perf_counter() - t0
    say(f"sample (temperature 0.8):\ndef {sample}\n")
    report_files(files, say)
    say(f"({elapsed:.1f} s including compilation)")
    say(f"validation bits per character: {bpc:.3f} (unigram baseline {unigram:.3f})", flush=True)
    return {"bpc": bpc, "unigram_bpc": unigram, "sample": sample, "seconds": elapsed, "model": model}
