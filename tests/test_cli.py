"""The command line: help, clear errors, a two-epoch run that resumes, a probe."""
import csv
import json
import subprocess
import sys

import pytest

from dctutor.cli import main
from dctutor.deepcluster import HISTORY_COLUMNS

TINY = ["--dataset", "shapes", "--n", "96", "--k", "6", "--width", "0.125", "--pca-dim", "16",
        "--batch-size", "32", "--kmeans-iters", "5", "--no-progress", "--device", "cpu"]


def test_help_lists_the_commands_and_options():
    out = subprocess.run([sys.executable, "-m", "dctutor", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "probe" in out.stdout
    out = subprocess.run([sys.executable, "-m", "dctutor", "train", "--help"], capture_output=True, text=True,
                         check=True)
    for option in ("--k", "--epochs", "--lr", "--uniform-sampling", "--reassign-empty", "--kmeans-backend",
                   "--rgb", "--width", "--out", "--device"):
        assert option in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["train", "--out", "x", "--dataset", "mnist"], "unknown dataset 'mnist'; choose one of shapes"),
    (["train", "--out", "x", "--epochs", "-1"], "-1 must be >= 0"),
    (["train", "--out", "x", "--k", "ten"], "'ten' is not a whole number"),
    (["train", "--out", "x", "--uniform-sampling", "maybe"], "'maybe' is not true or false"),
    (["train", "--out", "x", "--small-input", "huge"], "invalid choice: 'huge'"),
    (["train"], "--out"),
])
def test_bad_arguments_exit_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_values_fail_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "r"), *TINY, "--k", "96"])
    assert "k=96 but the dataset has only 96 images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "r"), *TINY, "--dataset", "folder:/no/such/folder"])
    assert "/no/such/folder" in capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_divergence_exits_with_advice(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "r"), *TINY, "--lr", "1e6", "--epochs", "4"])
    assert exit_info.value.code == 2
    assert "training diverged; lower lr" in capsys.readouterr().err


def test_two_epoch_run_resumes_and_probes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "1"]) == 0
    assert main(["train", "--out", str(out), *TINY, "--epochs", "2"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == HISTORY_COLUMNS and len(rows) == 2
    assert len(rows[1]["sizes"].split()) == 6
    printed = capsys.readouterr().out
    assert "epoch 1:" in printed and "NMI lab" in printed
    with pytest.raises(SystemExit):
        main(["train", "--out", str(out), *TINY, "--epochs", "3", "--lr", "0.1"])
    assert "lr: 0.05 -> 0.1" in capsys.readouterr().err
    assert main(["probe", "--run", str(out), "--test-n", "60", "--epochs", "1", "--knn-k", "5", "--layers",
                 "conv2", "conv5", "--min-steps", "5"]) == 0
    table = json.loads((out / "probe.json").read_text())
    assert [row["layer"] for row in table] == ["conv2", "conv5", "knn fc7"]
    assert "random" in capsys.readouterr().out
