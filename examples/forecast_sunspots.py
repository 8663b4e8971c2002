"""Forecasting the yearly sunspot numbers one year ahead with an LSTM, against two baselines.

Each sample is a window of the 12 years before the year to predict (values divided by 100, one
feature per step); the last 80 years (1929-2008) are the test set, the years before them the
training set (10% of its windows, drawn at random, for validation). An LSTM(32) reads the window
and a Dense(1) gives the next value. It is compared on the test years with persistence (next
year = this year) and a linear autoregression fitted by least squares on the same 12-year
windows of the training set; the test RMSE is in sunspots.

    python examples/forecast_sunspots.py --out sunspots_out  # LSTM 16.6-18.4 (seeds 0-9), AR 18.74, persistence 31.58
    graphc render examples/forecast_sunspots.py -o lstm.svg  # build(): the model, untrained

It writes OUT/forecast.png (the test years: actual, LSTM, AR, persistence) and OUT/curves.png.
The data are graphc/data/sunspots.csv (statsmodels' copy of the SIDC series; see its header).
"""

import argparse
import math
from pathlib import Path

from graphc import nn
from graphc.datasets_sequences import LinearAR, forecast_windows, load_sunspots, persistence_forecast, rmse

SCALE = 100.0  # sunspot numbers reach ~190: the network sees them divided by 100


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--window", type=int, default=12, help="years the forecast reads")
    p.add_argument("--units", type=int, default=32, help="LSTM units")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--test-years", type=int, default=80)
    p.add_argument("--out", default=None, help="folder for forecast.png and curves.png")
    p.add_argument("--backend", default=None, help="reference or numba (default: numba when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def data(window: int, test_years: int):
    """(X_train, y_train, X_test, y_test, test_years) in units of SCALE sunspots."""
    years, counts = load_sunspots()
    X, y = forecast_windows(counts / SCALE, window)
    n_train = len(X) - test_years
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:], years[window:][n_train:]


def make_model(args, train_samples: int):
    steps = args.epochs * math.ceil(round(train_samples * 0.9) / 32)  # for the cosine decay
    optimizer = nn.optim.Adam(args.lr, clip_norm=1.0, schedule=nn.schedules.CosineDecay(steps))
    net = nn.Sequential([nn.LSTM(args.units), nn.Dense(1)], name="forecaster")
    return nn.Model(net, input_shape=(args.window, 1), loss="mse", optimizer=optimizer, backend=args.backend,
                    seed=args.seed, name="sunspots_lstm")  # fmt: skip


def build():
    """The model `python examples/forecast_sunspots.py` trains, before training (what `graphc render` draws)."""
    args = parse_args([])
    return make_model(args, len(data(args.window, args.test_years)[0]))


def plot_forecast(path, years, actual, forecasts: dict, title: str) -> Path:
    """A PNG of the actual series and each forecast (name -> values) over `years`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(years, actual, color="black", lw=2, label="actual")
    for (name, values), style in zip(forecasts.items(), ("-", "--", ":")):
        ax.plot(years, values, style, lw=1.5, label=name)
    ax.set_xlabel("year")
    ax.set_ylabel("sunspot number")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    args = parse_args(argv)
    Xtr, ytr, Xte, yte, years = data(args.window, args.test_years)
    model = make_model(args, len(Xtr))
    model.fit(Xtr, ytr, epochs=args.epochs, batch_size=32, validation_split=0.1, seed=args.seed,
              progress=not args.quiet)  # fmt: skip
    preds = {
        "LSTM": model.predict(Xte) * SCALE,
        "linear AR": LinearAR().fit(Xtr, ytr).predict(Xte) * SCALE,
        "persistence": persistence_forecast(Xte) * SCALE,
    }
    actual = yte * SCALE
    scores = {name: rmse(p, actual) for name, p in preds.items()}
    if args.out:
        title = f"sunspots, one year ahead from {args.window} years ({years[0]}-{years[-1]}: test)"
        rounded = {f"{k} (RMSE {v:.1f})": preds[k][:, 0] for k, v in scores.items()}
        print(f"wrote {plot_forecast(Path(args.out) / 'forecast.png', years, actual[:, 0], rounded, title)}")
        print(f"wrote {model.plot_history(Path(args.out) / 'curves.png', title='sunspots LSTM: mse')}")
    print(f"test RMSE ({years[0]}-{years[-1]}): " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    return {"rmse": scores, "predictions": preds, "actual": actual, "years": years, "model": model}


if __name__ == "__main__":
    main()
