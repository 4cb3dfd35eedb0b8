"""Run folders on disk: atomic files, damaged files named and kept, a model rebuilt from its arch."""
import json

import pytest
import torch

from dctutor.models import alexnet, resnet18
from dctutor.runs import (CHECKPOINT, jsonable, load_checkpoint, load_model, read_json, save_checkpoint,
                          write_history, write_json)


@pytest.mark.parametrize("factory", [lambda: alexnet(7, small_input=True, width=0.125, seed=3),
                                     lambda: resnet18(7, seed=3)])
def test_load_model_rebuilds_the_saved_network(tmp_path, factory):
    net = factory()
    save_checkpoint(tmp_path / CHECKPOINT, {"model": net.state_dict(), "arch": net.arch, "epoch": 0})
    loaded = load_model(tmp_path)
    assert loaded.arch == net.arch and loaded.top_layer.out_features == 7 and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    assert not list(tmp_path.glob("*.tmp")), "no temporary file is left behind"


def test_missing_damaged_and_foreign_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no DeepCluster checkpoint at .*nowhere; .* --out .*nowhere$"):
        load_checkpoint(tmp_path / "nowhere")  # a run folder that does not exist: train into it
    with pytest.raises(FileNotFoundError, match=f"--out {tmp_path}$"):
        load_checkpoint(tmp_path / "gone.pt")
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"epoch": 0})
    for name, content in (("empty.pt", b""), ("random.pt", bytes(range(256)) * 4), ("cut.pt", good.read_bytes()[:64])):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name} is damaged or not a dctutor checkpoint"):
            load_checkpoint(tmp_path / name)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a dctutor DeepCluster checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(FileNotFoundError, match="dir.pt"):
        load_checkpoint(tmp_path / "dir.pt" / "x")


def test_json_files_are_strict_and_checked(tmp_path):
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": (1, 2), "z": torch.tensor([1.5])})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": [1, 2], "z": [1.5]}
    assert jsonable([float("inf")]) == [None]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json should hold a JSON object"):
        read_json(tmp_path / "list.json")


def test_history_files(tmp_path):
    rows = [{"epoch": 0, "loss": 1.0, "nmi_prev": float("nan"), "sizes": [3, 4]}]
    write_history(rows, tmp_path)
    assert json.loads((tmp_path / "history.json").read_text())[0]["nmi_prev"] is None
    assert (tmp_path / "history.csv").read_text().splitlines() == ["epoch,loss,nmi_prev,sizes", "0,1.0,nan,3 4"]


def _checkpoint_bytes(path):
    return path.read_bytes() if path.exists() else None


def test_format_versions_newer_refused_older_named(tmp_path):
    for version, message in ((3, "written by a newer dctutor \\(format 3.*upgrade dctutor or use a new --out"),
                             (0, "written by an older dctutor \\(format 0.*train again with a new --out"),
                             ("2", "no readable format version")):
        torch.save({"format": "dctutor-deepcluster", "version": version, "epoch": 0}, tmp_path / CHECKPOINT)
        before = (tmp_path / CHECKPOINT).read_bytes()
        with pytest.raises(ValueError, match=message):
            load_checkpoint(tmp_path)
        assert (tmp_path / CHECKPOINT).read_bytes() == before


def _format_1(net, labels):
    """The layout dctutor wrote before checkpoints were tagged (AlexNet only, numpy labels)."""
    import numpy as np

    model = {k.replace("head.", "classifier.", 1): v for k, v in net.state_dict().items()}
    row = {"epoch": 0, "loss": 1.0, "nmi_labels": 0.1, "nmi_prev": float("nan"), "n_empty": 0, "size_min": 1,
           "size_max": 30, "n_effective": 5.0, "time_extract": 0.1, "time_cluster": 0.1, "time_train": 0.1,
           "sizes": [30, 10, 10, 6, 2, 2]}
    return {"model": model, "epoch": 0, "history": [row], "labels": np.asarray(labels),
            "arch": {"config": "small", "width": net.width, "fc_dim": net.fc_dim, "sobel": True}}


def test_format_1_is_migrated(tmp_path):
    net = alexnet(6, small_input=True, width=0.125, seed=3)
    torch.save(_format_1(net, list(range(6)) * 10), tmp_path / CHECKPOINT)
    state = load_checkpoint(tmp_path)
    assert state["version"] == 2 and state["labels"].dtype == torch.int64 and state["history"][0]["largest"] == 0.5
    loaded = load_model(tmp_path)
    assert loaded.arch == net.arch
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))


def test_extra_missing_and_edited_fields_are_named_not_key_errors(tmp_path):
    from dctutor.runs import check_resumable, model_from_state

    net = alexnet(6, small_input=True, width=0.125, seed=3)
    save_checkpoint(tmp_path / CHECKPOINT, {"model": net.state_dict(), "arch": net.arch, "epoch": 0,
                                            "a_field_from_the_future": [1, 2]})
    assert load_model(tmp_path).arch == net.arch, "unknown fields are ignored"
    state = load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="holds no resumable run \\(missing optimizer, history, labels"):
        check_resumable(state, tmp_path / CHECKPOINT)
    with pytest.raises(ValueError, match="holds no network"):
        model_from_state({k: v for k, v in state.items() if k != "model"})
    with pytest.raises(ValueError, match="weights do not fit its arch"):
        model_from_state(state | {"arch": net.arch | {"width": 0.25}})
    with pytest.raises(ValueError, match="is damaged \\(epoch='0'; labels are not 60 cluster ids"):
        check_resumable({key: {} for key in ("model", "optimizer", "history", "config", "arch")}
                        | {"epoch": "0", "labels": torch.zeros(5), "history": [], "data": {"n": 60}}, "ck.pt")


def test_describe_run_names_the_network_a_benchmark_measured(tmp_path):
    from dctutor.cli import main
    from dctutor.runs import describe_run

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--dataset", "shapes", "--n", "64", "--k", "4", "--width", "0.125",
                 "--pca-dim", "8", "--batch-size", "32", "--kmeans-iters", "3", "--epochs", "2", "--no-progress",
                 "--device", "cpu"]) == 0
    described = describe_run(out)
    assert described["epochs_done"] == 2 and described["k"] == 4 and described["width"] == 0.125
    assert described["dataset"] == "shapes" and described["n"] == 64
    settings = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps(settings | {"dataset": "folder:/home/someone/data/cifar/train"}))
    assert describe_run(out)["dataset"] == "folder:cifar/train", "no private path in saved results"
    (out / "run.json").unlink()
    from_checkpoint = describe_run(out)
    assert from_checkpoint["dataset"] is None, "a checkpoint alone does not name its data set"
    assert {key: from_checkpoint[key] for key in ("k", "width", "n", "rgb", "arch", "epochs_done")} == {
        "k": 4, "width": 0.125, "n": 64, "rgb": False, "arch": "alexnet", "epochs_done": 2}
