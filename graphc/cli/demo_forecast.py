"""`graphc demo --task forecast --out DIR`: an LSTM forecasts the yearly sunspot numbers one year ahead.

Windows of the 12 years before each year (graphc/data/sunspots.csv, divided by 100) train an
LSTM(32) + Dense(1); the last 80 years (1929-2008) are the test set. The last line compares its
test RMSE with persistence (next year = this year) and a linear autoregression fitted by least
squares on the same windows: `test RMSE (1929-2008): LSTM ..., linear AR 18.74, persistence 31.58`.
Writes DIR/forward.svg, DIR/backward.svg, DIR/train.svg (as the image task), DIR/curves.png and
DIR/forecast.png (the test years: actual and the three forecasts).
"""

import math
import time
from pathlib import Path

WINDOW, TEST_YEARS, SCALE = 12, 80, 100.0


def forecast_demo(
    out: str, epochs: int = 100, backend: str | None = None, seed: int = 0, progress: bool = True, say=print
) -> dict:
    """Train the sunspots LSTM and write its drawings and plots into `out`. Returns the results."""
    from graphc import nn
    from graphc.cli.demo_drawing import draw_training_step, report_files
    from graphc.datasets_sequences import LinearAR, forecast_windows, load_sunspots, persistence_forecast, rmse

    out_dir = Path(out)
    t0 = time.perf_counter()
    years, counts = load_sunspots()
    X, y = forecast_windows(counts / SCALE, WINDOW)
    n = len(X) - TEST_YEARS
    Xtr, ytr, Xte, yte, test_years = X[:n], y[:n], X[n:], y[n:], years[WINDOW:][n:]
    steps = epochs * math.ceil(round(n * 0.9) / 32)
    optimizer = nn.optim.Adam(1e-2, clip_norm=1.0, schedule=nn.schedules.CosineDecay(steps))
    net = nn.Sequential([nn.LSTM(32), nn.Dense(1)], name="forecaster")
    model = nn.Model(
        net, input_shape=(WINDOW, 1), loss="mse", optimizer=optimizer, backend=backend, seed=seed, name="sunspots_lstm"
    )
    say(
        f"graphc demo: LSTM forecasting sunspots one year ahead from {WINDOW} years, {n} training windows "
        f"({years[0] + WINDOW}-{test_years[0] - 1}), test {test_years[0]}-{test_years[-1]}, backend {model.backend}, "
        f"{epochs} epochs",
        flush=True,
    )
    model.fit(Xtr, ytr, epochs=epochs, batch_size=32, validation_split=0.1, seed=seed, progress=progress)
    preds = {
        "LSTM": model.predict(Xte) * SCALE,
        "linear AR": LinearAR().fit(Xtr, ytr).predict(Xte) * SCALE,
        "persistence": persistence_forecast(Xte) * SCALE,
    }
    actual = yte * SCALE
    scores = {k: rmse(p, actual) for k, p in preds.items()}
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no empty folder behind
    files = draw_training_step(model, out_dir)
    files.append(model.plot_history(out_dir / "curves.png", title="sunspots LSTM: training and validation mse"))
    files.append(plot_forecast(out_dir / "forecast.png", test_years, actual[:, 0], preds, scores))
    elapsed = time.perf_counter() - t0
    report_files(files, say)
    say(f"({elapsed:.1f} s including compilation)")
    say(
        f"test RMSE ({test_years[0]}-{test_years[-1]}): " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()),
        flush=True,
    )
    return {"rmse": scores, "seconds": elapsed, "model": model}


def plot_forecast(path: Path, years, actual, preds: dict, scores: dict) -> Path:
    """forecast.png: the actual test years and each forecast, with its RMSE in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(years, actual, color="black", lw=2, label="actual")
    for (name, p), style in zip(preds.items(), ("-", "--", ":")):
        ax.plot(years, p[:, 0], style, lw=1.5, label=f"{name} (RMSE {scores[name]:.1f})")
    ax.set(xlabel="year", ylabel="sunspot number", title="sunspots, one year ahead: test years")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
