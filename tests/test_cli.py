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
    (["train", "--out", ""], "--out: needs a folder name"),
    (["train", "--out", "x", "--dataset", "folder:"], "folder: needs a path"),
    (["train", "--out", "x", "--arch", "vgg"], "invalid choice: 'vgg'"),
    (["train", "--out", "x", "--lr", "inf"], "must be a finite positive number"),
    (["train", "--out", "x", "--ep", "3"], "unrecognized arguments: --ep"),
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
        main(["train", "--out", str(tmp_path / "r"), *TINY, "--lr", "10", "--epochs", "4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "training diverged" in err and "lower lr" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "r2"), *TINY, "--lr", "1e6"])
    assert "lr=1000000.0 must be <= 10" in capsys.readouterr().err


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


def test_probe_refuses_to_score_on_the_training_images(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "1"]) == 0
    with pytest.raises(SystemExit):
        main(["probe", "--run", str(out), "--test-split", "train"])
    assert "is the split the run trained on" in capsys.readouterr().err
    folder = tmp_path / "tree"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"dataset": f"folder:{folder}", "split": "train"}))
    from dctutor.cli import _check_held_out
    with pytest.raises(ValueError, match="has no test/ folder, so every split is the same images"):
        _check_held_out({"dataset": f"folder:{folder}", "split": "train"}, "test")


def test_foreign_files_in_out_are_never_overwritten(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "history.csv").write_text("my own data\n")
    with pytest.raises(SystemExit):
        main(["train", "--out", str(out), *TINY])
    assert "not empty and holds no dctutor run" in capsys.readouterr().err
    assert (out / "history.csv").read_text() == "my own data\n"


def test_damaged_checkpoint_is_named_and_kept(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "1"]) == 0
    for garbage in (b"", b"not a checkpoint at all", (out / "checkpoint.pt").read_bytes()[:200]):
        (out / "checkpoint.pt").write_bytes(garbage)
        with pytest.raises(SystemExit):
            main(["train", "--out", str(out), *TINY, "--epochs", "2"])
        err = capsys.readouterr().err
        assert "checkpoint.pt is damaged or not a dctutor checkpoint" in err and len(err.strip().splitlines()) == 1
        assert (out / "checkpoint.pt").read_bytes() == garbage


def test_resnet18_trains_probes_and_transfers(tmp_path, capsys):
    from dctutor.voc_standin import make_voc_standin

    out = tmp_path / "r18"
    assert main(["train", "--out", str(out), *TINY, "--arch", "resnet18", "--image-size", "16", "--epochs", "2"]) == 0
    assert json.loads((out / "run.json").read_text())["arch"] == "resnet18"
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [0, 1]
    assert main(["probe", "--run", str(out), "--test-n", "40", "--epochs", "1", "--knn-k", "5",
                 "--min-steps", "5", "--layers", "layer2", "layer4"]) == 0
    assert [row["layer"] for row in json.loads((out / "probe.json").read_text())] == ["layer2", "layer4", "knn pool"]
    make_voc_standin(tmp_path / "voc", n_train=24, n_val=16, n_test=4, image_size=32, progress=False)
    assert main(["transfer", "--run", str(out), "--voc", str(tmp_path / "voc"), "--image-size", "16",
                 "--epochs-fc", "2", "--epochs-all", "1", "--crops", "2", "--device", "cpu"]) == 0
    result = json.loads((out / "transfer.json").read_text())
    assert {(r["init"], r["mode"]) for r in result["rows"]} == {(i, m) for i in ("DeepCluster", "Random")
                                                                 for m in ("fc6-8", "all")}
    assert all(0 < r["map"] <= 1 for r in result["rows"]) and result["arch"]["name"] == "resnet18"
    with pytest.raises(SystemExit):
        main(["transfer", "--run", str(out), "--voc", str(tmp_path / "voc"), "--test-split", "train"])
    assert "both train" in capsys.readouterr().err


def test_a_run_keeps_its_thread_count(tmp_path, capsys):
    import torch

    out = tmp_path / "run"
    previous = torch.get_num_threads()
    try:
        assert main(["train", "--out", str(out), *TINY, "--epochs", "1", "--threads", "1"]) == 0
        with pytest.raises(SystemExit):
            main(["train", "--out", str(out), *TINY, "--epochs", "2", "--threads", "2"])
    finally:
        torch.set_num_threads(previous)
    assert "threads: 1 -> 2" in capsys.readouterr().err


def test_os_errors_on_the_output_folder_are_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "a_file" / "run"), *TINY])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "a_file" in err and "Traceback" not in err


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dctutor", "train", "--out", str(out), *TINY, "--epochs", "500"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (out / "history.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted; run the same command again to resume from epoch" in err and "Traceback" not in err


def test_halting_clustering_is_an_option_that_defaults_to_never(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "3", "--halt-clustering-after", "1"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [row["time_cluster"] == 0 for row in history] == [False, True, True]
    assert json.loads((out / "run.json").read_text())["halt_clustering_after"] == 1
    assert main(["train", "--out", str(tmp_path / "plain"), *TINY, "--epochs", "2",
                 "--halt-clustering-after", "none"]) == 0
    assert json.loads((tmp_path / "plain" / "run.json").read_text())["halt_clustering_after"] is None
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "bad"), *TINY, "--halt-clustering-after", "0"])
    assert "0 must be >= 1" in capsys.readouterr().err
