"""The command line: help, clear errors, a two-epoch run that resumes, a probe."""
import csv
import json
import subprocess
import sys

import pytest
import torch

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
    no_width = [a for i, a in enumerate(TINY) if "--width" not in TINY[max(i - 1, 0):i + 1]]
    assert main(["train", "--out", str(out), *no_width, "--arch", "resnet18", "--image-size", "16", "--epochs", "2"]) == 0
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


def test_the_same_run_resumes_however_its_paths_are_typed(tmp_path, monkeypatch, capsys):
    import shutil

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "1"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "run", *TINY, "--epochs", "2"]) == 0  # relative instead of absolute
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # another working directory
    assert main(["train", "--out", "../run", *TINY, "--epochs", "3"]) == 0
    shutil.move(out, tmp_path / "moved")
    assert main(["train", "--out", str(tmp_path / "moved"), *TINY, "--epochs", "4"]) == 0
    history = json.loads((tmp_path / "moved" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    capsys.readouterr()
    checkpoint = (tmp_path / "moved" / "checkpoint.pt").read_bytes()
    for option, message in ((["--n", "80"], "n: 96 -> 80"), (["--k", "5"], "k: 6 -> 5")):
        with pytest.raises(SystemExit):
            main(["train", "--out", str(tmp_path / "moved"), *TINY, "--epochs", "5", *option])
        err = capsys.readouterr().err
        assert message in err and "use a new --out or the same options" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "moved" / "checkpoint.pt").read_bytes() == checkpoint, "a refused resume changes nothing"


def test_a_folder_data_set_resumes_after_it_moved_but_not_on_other_images(tmp_path, capsys):
    import shutil

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            (tmp_path / "tree" / split / label).mkdir(parents=True)
            for i in range(20):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "tree" / split / label / f"{i}.png")
    small = [*TINY[2:], "--n", "40", "--image-size", "16"]
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--dataset", f"folder:{tmp_path / 'tree'}", *small, "--epochs", "1"]) == 0
    shutil.move(tmp_path / "tree", tmp_path / "tree2")
    assert main(["train", "--out", str(out), "--dataset", f"folder:{tmp_path / 'tree2'}", *small, "--epochs", "2"]) == 0
    assert json.loads((out / "run.json").read_text())["dataset"] == f"folder:{(tmp_path / 'tree2').resolve()}"
    assert main(["probe", "--run", str(out), "--test-n", "20", "--epochs", "1", "--knn-k", "3", "--layers", "conv5",
                 "--min-steps", "2"]) == 0, "probe finds the data where the last resume found it"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "tree2" / "train" / "a" / "0.png")
    with pytest.raises(SystemExit):
        main(["train", "--out", str(out), "--dataset", f"folder:{tmp_path / 'tree2'}", *small, "--epochs", "3"])
    assert "was trained on other images" in capsys.readouterr().err
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [0, 1]


def test_checkpoint_formats_and_fields(tmp_path, capsys):
    import torch

    from dctutor.runs import load_checkpoint, save_checkpoint

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "1"]) == 0
    state = load_checkpoint(out)
    # A checkpoint from before the 'spread' column, with a field this version does not know: resumes.
    state["history"] = [{k: v for k, v in row.items() if k != "spread"} for row in state["history"]]
    save_checkpoint(out / "checkpoint.pt", {k: v for k, v in state.items() if k not in ("format", "version")}
                    | {"added_later": 1})
    assert main(["train", "--out", str(out), *TINY, "--epochs", "2"]) == 0
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"] and rows[0]["spread"] == "nan" and float(rows[1]["spread"]) > 0
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [0, 1]
    capsys.readouterr()
    torch.save(load_checkpoint(out) | {"version": 99}, out / "checkpoint.pt")
    history = (out / "history.json").read_text()
    with pytest.raises(SystemExit):
        main(["train", "--out", str(out), *TINY, "--epochs", "3"])
    err = capsys.readouterr().err
    assert "written by a newer dctutor (format 99" in err and "upgrade dctutor or use a new --out" in err
    assert len(err.strip().splitlines()) == 1 and (out / "history.json").read_text() == history
    assert load_checkpoint.__module__ and torch.load(out / "checkpoint.pt", weights_only=True)["version"] == 99


def test_run_json_with_missing_or_wrong_fields_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "1"]) == 0
    settings = json.loads((out / "run.json").read_text())
    for edited, message in (({k: v for k, v in settings.items() if k != "split"}, "run.json lacks 'split'"),
                            (settings | {"dataset": 5}, "run.json: 'dataset' must be"),
                            (settings | {"n": "ninety"}, "run.json: 'n' must be")):
        (out / "run.json").write_text(json.dumps(edited))
        with pytest.raises(SystemExit):
            main(["probe", "--run", str(out), "--test-n", "20"])
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("error, message", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "ran out of memory; lower --batch-size"),
    (RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR\nlong details"), "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR;"),
])
def test_torch_runtime_errors_are_one_line(tmp_path, capsys, monkeypatch, error, message):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("dctutor.cli.train_deepcluster", fail)
    with pytest.raises(SystemExit) as code:
        main(["train", "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err
    assert code.value.code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
