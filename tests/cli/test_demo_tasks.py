"""`graphc demo --task forecast|text`: each trains, prints its metric line last and writes its
drawings and curves (the image task, the default, is tested in test_demo_command.py)."""

import re
import shutil
from pathlib import Path

import pytest

from graphc.cli import main
from graphc.cli.demo import TASK_EPOCHS, task_function

PNG = b"\x89PNG\r\n\x1a\n"


def run_task(capsys, tmp_path, task, *extra):
    out = tmp_path / task
    status = main(["demo", "--task", task, "--out", str(out), "--backend", "reference", "--quiet", *extra])
    assert status == 0
    return out, capsys.readouterr().out.strip().splitlines()


def check_drawings(out: Path, lines: list[str], plots: list[str]) -> str:
    """The three drawings (.svg with dot, else .gv) and the plots exist and are the files named by `wrote` lines."""
    ext = "svg" if shutil.which("dot") else "gv"
    for name in ("forward", "backward", "train"):
        text = (out / f"{name}.{ext}").read_text()
        assert text.lstrip().startswith(("<?xml", "<svg")) if ext == "svg" else text.lstrip().startswith("digraph")
    for name in plots:
        assert (out / name).read_bytes()[:8] == PNG
    wrote = [line.removeprefix("wrote ") for line in lines if line.startswith("wrote ")]
    assert sorted(Path(w).name for w in wrote) == sorted([f"backward.{ext}", f"forward.{ext}", f"train.{ext}", *plots])
    return (out / f"forward.{ext}").read_text()


def test_forecast_task_prints_rmse_against_both_baselines_and_writes_its_plots(tmp_path, capsys):
    out, lines = run_task(capsys, tmp_path, "forecast", "--epochs", "2")
    assert lines[0].startswith("graphc demo: LSTM forecasting sunspots") and "backend reference, 2 epochs" in lines[0]
    m = re.fullmatch(r"test RMSE \(1929-2008\): LSTM (\d+\.\d\d), linear AR 18\.74, persistence 31\.58", lines[-1])
    assert m, lines[-1]
    assert 0 < float(m.group(1)) < 200  # two epochs: a number, not yet a good forecast
    forward = check_drawings(out, lines, ["curves.png", "forecast.png"])
    assert "scan" in forward  # the LSTM's loop is in the drawing


def test_text_task_prints_bits_per_character_against_the_unigram_baseline(tmp_path, capsys, monkeypatch):
    import graphc.cli.demo_text

    monkeypatch.setattr(graphc.cli.demo_text, "CORPUS_CHARS", 20_000)  # CI-sized: the first 20,000 characters
    out, lines = run_task(capsys, tmp_path, "text", "--epochs", "3")
    assert lines[0].startswith("graphc demo: character GRU on 17984 training / 1984 validation characters")
    assert lines[0].endswith("distinct), backend reference, 3 epochs")
    m = re.fullmatch(r"validation bits per character: (\d\.\d{3}) \(unigram baseline (\d\.\d{3})\)", lines[-1])
    assert m, lines[-1]
    bpc, unigram = float(m.group(1)), float(m.group(2))
    assert 4.0 < unigram < 4.6 and bpc < unigram - 0.2  # three short epochs already beat character frequencies
    (i,) = [k for k, line in enumerate(lines) if line == "sample (temperature 0.8):"]
    assert lines[i + 1].startswith("def ")
    check_drawings(out, lines, ["curves.png"])


def test_each_task_has_a_function_and_a_default_epoch_count(capsys):
    from graphc.cli.demo import demo
    from graphc.cli.demo_forecast import forecast_demo
    from graphc.cli.demo_text import text_demo

    assert task_function("image") is demo and task_function("forecast") is forecast_demo
    assert task_function("text") is text_demo
    assert TASK_EPOCHS == {"image": 20, "forecast": 100, "text": 3}
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--task {image,forecast,text}" in text
    assert "default: 20 for image, 100 for forecast, 3 for text" in text


def test_unknown_task_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--task", "speech"])
    assert exc.value.code == 2
    assert "argument --task: invalid choice: 'speech' (choose from" in capsys.readouterr().err


def test_bad_epochs_for_a_task_prints_the_message_alone(capsys):
    assert main(["demo", "--task", "forecast", "--epochs", "0"]) == 2
    assert capsys.readouterr().err == "graphc demo: error: --epochs must be >= 1, got 0\n"


def test_a_backend_that_cannot_run_is_one_line_and_leaves_no_folder(tmp_path, capsys):
    """--backend reaches nn.Model as given (any registered backend; here one that does not exist)."""
    out = tmp_path / "never"
    for task in ("forecast", "text"):
        assert main(["demo", "--task", task, "--backend", "nosuch", "--out", str(out), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("graphc demo: error: unknown backend 'nosuch'; available: ") and err.count("\n") == 1
    assert not out.exists()


def test_the_sequence_tasks_refuse_an_mpi_launch(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PMI_SIZE", "2")
    assert main(["demo", "--task", "forecast", "--out", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err == (
        "graphc demo: error: --task forecast runs in one process; under an MPI launcher only the image task "
        "trains data-parallel\n"
    )
    assert not (tmp_path / "x").exists()
