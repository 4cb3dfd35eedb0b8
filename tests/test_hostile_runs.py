"""A hostile pass, second round (issue 23): kills at the first save, changed bytes, links inside a
folder, options that would do nothing, transfers that cannot train, and advice that fits the failure."""
import errno
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dctutor.cli import main
from dctutor.data import load_dataset
from dctutor.runs import CHECKPOINT, SETTINGS, load_checkpoint, load_model, save_checkpoint

TINY = ["--dataset", "shapes", "--n", "96", "--k", "6", "--width", "0.125", "--pca-dim", "16",
        "--batch-size", "32", "--kmeans-iters", "5", "--no-progress", "--device", "cpu"]


def _one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    # Decoding a folder draws a progress bar on stderr; what is left must be one line.
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1 or err.startswith("usage:"), err
    return err


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """An uninterrupted two-epoch run: what every resumed run below must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "2"]) == 0
    return load_checkpoint(out)


def _same_weights(out, reference) -> bool:
    state = load_checkpoint(out)
    return state["epoch"] == reference["epoch"] and all(
        torch.equal(state["model"][key], value) for key, value in reference["model"].items())


# 1. The first save's crash window: every state a kill can leave resumes or starts afresh.

def _after_first_epoch(tmp_path, keep: tuple[str, ...]):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "1"]) == 0
    for path in out.iterdir():
        if path.name not in keep:
            path.unlink()
    return out


@pytest.mark.parametrize("keep", [(CHECKPOINT,), (CHECKPOINT, SETTINGS)], ids=["no run.json", "no history"])
def test_a_kill_after_the_first_checkpoint_resumes_bit_exactly(tmp_path, two_epochs, keep):
    out = _after_first_epoch(tmp_path, keep)
    (out / (SETTINGS + ".tmp")).write_text('{"half')  # a kill while run.json was being written
    assert main(["train", "--out", str(out), *TINY, "--epochs", "2"]) == 0
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [0, 1]
    assert _same_weights(out, two_epochs)
    assert json.loads((out / SETTINGS).read_text())["k"] == 6


@pytest.mark.parametrize("leftovers", [{CHECKPOINT + ".tmp": b"PK\x03\x04 half a zip"}, {SETTINGS + ".tmp": b"{"},
                                       {SETTINGS: b"from-the-run"}], ids=["checkpoint.tmp", "run.json.tmp", "run.json"])
def test_a_kill_before_the_first_checkpoint_starts_afresh(tmp_path, two_epochs, leftovers):
    out = tmp_path / "run"
    out.mkdir()
    settings_first = tmp_path / "first"
    if SETTINGS in leftovers:  # what the run wrote before it was killed, here with another lr
        assert main(["train", "--out", str(settings_first), *TINY, "--epochs", "0", "--lr", "0.1"]) == 0
        leftovers = {SETTINGS: (settings_first / SETTINGS).read_bytes()}
    for name, content in leftovers.items():
        (out / name).write_bytes(content)
    assert main(["train", "--out", str(out), *TINY, "--epochs", "2"]) == 0
    assert _same_weights(out, two_epochs)
    assert json.loads((out / SETTINGS).read_text())["lr"] == 0.05


def test_run_json_is_written_before_the_first_checkpoint(tmp_path, monkeypatch, capsys):
    import dctutor.deepcluster as deepcluster

    seen = []

    def spy(path, state):
        seen.append(sorted(p.name for p in path.parent.iterdir()))
        raise KeyboardInterrupt  # killed in the middle of the first save

    monkeypatch.setattr(deepcluster, "save_checkpoint", spy)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "2"]) == 130
    assert seen == [[SETTINGS]]
    monkeypatch.undo()
    assert main(["train", "--out", str(out), *TINY, "--epochs", "1"]) == 0


def test_a_checkpoint_without_run_json_still_refuses_other_settings(tmp_path, capsys):
    out = _after_first_epoch(tmp_path, (CHECKPOINT,))
    before = (out / CHECKPOINT).read_bytes()
    err = _one_line_error(capsys, ["train", "--out", str(out), *TINY, "--epochs", "2", "--k", "5"])
    assert "another configuration (k: 6 -> 5" in err
    assert (out / CHECKPOINT).read_bytes() == before and not (out / SETTINGS).exists()


# 2. Checkpoint integrity.

def _flip(path, needle: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at > 0, "the tensor's bytes are stored as they are"
    data[at + len(needle) // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("tensor", ["weights", "momentum", "labels"])
def test_a_flipped_byte_in_a_checkpoint_is_refused(tmp_path, capsys, tensor):
    out = _after_first_epoch(tmp_path, (CHECKPOINT, SETTINGS, "history.json", "history.csv"))
    state = load_checkpoint(out)
    picked = {"weights": state["model"]["features.conv2.0.weight"],
              "momentum": next(iter(state["optimizer"]["state"].values()))["momentum_buffer"],
              "labels": state["labels"]}[tensor]
    _flip(out / CHECKPOINT, picked.numpy().tobytes()[:64])
    damaged = (out / CHECKPOINT).read_bytes()
    assert torch.load(out / CHECKPOINT, weights_only=True)["epoch"] == 0, "torch.load does not notice"
    err = _one_line_error(capsys, ["train", "--out", str(out), *TINY, "--epochs", "2"])
    assert "checkpoint.pt fails its checksum" in err and "restore a copy, or move it away" in err
    assert (out / CHECKPOINT).read_bytes() == damaged
    with pytest.raises(ValueError, match="fails its checksum"):
        load_model(out)


def test_any_changed_value_fails_the_checksum_and_a_fresh_save_passes(tmp_path):
    save_checkpoint(tmp_path / CHECKPOINT, {"epoch": 3, "history": [{"loss": 1.5}], "x": torch.arange(4.0)})
    written = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    for change in ({"epoch": 4}, {"history": [{"loss": 1.25}]}, {"x": torch.arange(4.0).double()}):
        torch.save(written | change, tmp_path / "edited.pt")
        with pytest.raises(ValueError, match="edited.pt fails its checksum"):
            load_checkpoint(tmp_path / "edited.pt")
    state = load_checkpoint(tmp_path)
    assert "checksum" not in state and state["epoch"] == 3
    save_checkpoint(tmp_path / CHECKPOINT, state | {"epoch": 4})  # a loaded state saved again is verified anew
    assert load_checkpoint(tmp_path)["epoch"] == 4
    torch.save({k: v for k, v in written.items() if k != "checksum"}, tmp_path / "older.pt")
    assert load_checkpoint(tmp_path / "older.pt")["epoch"] == 3, "checkpoints from before checksums still load"


# 3. Data-set identity: links inside a folder: tree.

def _tree(root, classes=("airplane", "cat", "ship"), n=4):
    rng = np.random.default_rng(0)
    for label in classes:
        (root / "train" / label).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "train" / label / f"{i}.png")
    return root


@pytest.mark.parametrize("stream", [False, True], ids=["memory", "streamed"])
@pytest.mark.parametrize("link, target, message", [
    ("loop", ".", "a folder already read"),
    ("up", "..", "outside its class folder"),
    ("sub/deeper", "../..", "outside its class folder"),
    ("plane.png", "../airplane/0.png", "outside its class folder"),
    ("again", "../cat", "a folder already read"),
    ("twice.png", "0.png", "count twice"),
    ("gone.png", "missing.png", "does not exist"),
])
def test_a_link_never_multiplies_images_nor_crosses_classes(tmp_path, stream, link, target, message):
    root = _tree(tmp_path / "tree")
    path = root / "train" / "cat" / link
    path.parent.mkdir(exist_ok=True)
    os.symlink(target, path)
    with pytest.raises(ValueError, match=message) as info:
        load_dataset(f"folder:{root}", image_size=8, stream=stream)
    assert str(path) in str(info.value) and len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["memory", "streamed"])
def test_links_out_of_the_tree_count_once_under_their_class(tmp_path, stream):
    root = _tree(tmp_path / "tree")
    extra = _tree(tmp_path / "extra", classes=("more", "single"), n=3) / "train"
    os.symlink(extra / "more", root / "train" / "cat" / "more")  # a class spread over two disks
    os.symlink(extra / "single" / "0.png", root / "train" / "ship" / "x.png")  # a subset made of links
    data = load_dataset(f"folder:{root}", image_size=8, stream=stream)
    assert len(data) == 12 + 3 + 1
    assert data.targets.bincount().tolist() == [4, 7, 5]
    assert sum(name.startswith("cat/more/") for name in data.files) == 3


def test_an_unreadable_class_folder_names_the_permission_error(tmp_path, monkeypatch, capsys):
    root = _tree(tmp_path / "tree")
    locked = str(root / "train" / "cat")
    scandir = os.scandir

    def refuse(path="."):
        if str(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", locked)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(PermissionError, match=f"cannot read folder '{locked}' \\(Permission denied\\); make it readable"):
        load_dataset(f"folder:{root}", image_size=8)
    err = _one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), "--dataset", f"folder:{root}",
                                   *TINY[2:], "--n", "12", "--k", "3"])
    assert "Permission denied" in err and "make it readable" in err and "Found no valid file" not in err


# 4. Options that would do nothing.

@pytest.mark.parametrize("argv, message", [
    (["--arch", "resnet18", "--width", "4.0"], "--width scales AlexNet's channels; resnet18 has a fixed width"),
    (["--workers", "4"], "--workers sets the decoding processes of --stream"),
    (["--download"], "--download is for cifar10 and stl10"),
    (["--data-root", "/somewhere"], "--data-root is for cifar10 and stl10"),
])
def test_an_option_that_would_change_nothing_is_refused(tmp_path, capsys, argv, message):
    base = [a for a in TINY if a not in ("--width", "0.125")]
    err = _one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), *base, *argv])
    assert message in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("device", ["mps", "meta", "cuda:x", "tpu"])
def test_devices_dctutor_does_not_run_on_are_refused_by_name(tmp_path, capsys, device):
    err = _one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), *TINY[:-1], device])
    assert f"{device!r} is not a device dctutor runs on; use auto, cpu, cuda or cuda:N" in err


def test_resnet_runs_from_before_the_width_rule_still_resume(tmp_path):
    base = [a for a in TINY if a not in ("--width", "0.125")] + ["--arch", "resnet18", "--image-size", "16"]
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *base, "--epochs", "1"]) == 0
    settings = json.loads((out / SETTINGS).read_text())
    assert settings["width"] is None
    (out / SETTINGS).write_text(json.dumps(settings | {"width": 0.5}))  # what older versions recorded
    assert main(["train", "--out", str(out), *base, "--epochs", "2"]) == 0


# 5. Transfer that cannot train is refused before any work.

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from dctutor.voc_standin import make_voc_standin

    root = tmp_path_factory.mktemp("transfer")
    assert main(["train", "--out", str(root / "run"), *TINY, "--image-size", "16", "--epochs", "1"]) == 0
    make_voc_standin(root / "voc", n_train=6, n_val=4, n_test=2, image_size=16, progress=False)
    return root


def _voc_copy(small_run, tmp_path, train_ids):
    voc = tmp_path / "voc"
    shutil.copytree(small_run / "voc", voc)
    lists = voc / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    ids = (lists / "train.txt").read_text().split()
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in ids[:train_ids]))
    return voc


def _no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("dctutor.cli.compare_transfer", fail)


@pytest.mark.parametrize("train_ids, message", [(1, "has 1 image(s), so transfer would take no step"),
                                                (0, "lists no images")])
def test_a_transfer_that_cannot_train_is_refused(small_run, tmp_path, capsys, train_ids, message):
    from dctutor.transfer import train_transfer
    from dctutor.voc import VOCClassification

    voc = _voc_copy(small_run, tmp_path, train_ids)
    err = _one_line_error(capsys, ["transfer", "--run", str(small_run / "run"), "--voc", str(voc), "--image-size",
                                   "16", "--epochs-fc", "1", "--epochs-all", "1", "--crops", "1", "--device", "cpu",
                                   "--json", str(tmp_path / "t.json")])
    assert message in err and not (tmp_path / "t.json").exists()
    if train_ids:
        with pytest.raises(ValueError, match="transfer would take no step"):
            train_transfer(load_model(small_run / "run"), VOCClassification(voc, "train", image_size=16,
                                                                             progress=False), "all")


@pytest.mark.parametrize("argv, message", [
    (["--json", "/no/such/folder/t.json"], "the folder /no/such/folder does not exist"),
    (["--modes", "all", "--views", "8"], "--views 8 is for the FC6-8 setting"),
    (["--modes", "all", "--epochs-fc", "3"], "--epochs-fc 3 is for the FC6-8 setting"),
    (["--modes", "fc6-8", "--epochs-all", "3"], "--epochs-all 3 is for the ALL setting"),
    (["--epochs-fc", "0"], "0 must be >= 1"),
])
def test_transfer_outputs_and_options_are_checked_before_any_work(small_run, capsys, monkeypatch, argv, message):
    _no_training(monkeypatch)
    err = _one_line_error(capsys, ["transfer", "--run", str(small_run / "run"), "--voc", str(small_run / "voc"),
                                   "--image-size", "16", *argv])
    assert message in err


# 6. API inputs that would return nonsense.

def test_probes_refuse_test_classes_that_training_lacks():
    from dctutor.evaluate import knn_from_features, linear_probe, probe_features
    from dctutor.models import alexnet

    data = load_dataset("shapes", n=40, image_size=16)
    train = data.subset(np.flatnonzero(data.targets.numpy() < 5))
    test = data.subset(np.flatnonzero(data.targets.numpy() >= 3))
    net = alexnet(4, small_input=True, width=0.125, seed=0)
    with pytest.raises(ValueError, match="test_ds has classes .* that train_ds lacks") as info:
        linear_probe(net, train, test, ["conv1"])
    assert all(data.classes[i] in str(info.value) for i in range(5, 10))
    x, y = np.zeros((6, 3), np.float32), np.array([0, 0, 1, 1, 2, 2])
    for score in (lambda: probe_features(x, y, x, y + 3), lambda: knn_from_features(x, y, x, y + 3, k=2)):
        with pytest.raises(ValueError, match="no test label .* occurs in the training labels"):
            score()
    with pytest.raises(ValueError, match="train_x has 3 features per image but test_x 2"):
        probe_features(x, y, x[:, :2], y)


def test_extract_features_refuses_a_pool_that_does_nothing_or_zero():
    from dctutor.features import extract_features
    from dctutor.models import alexnet

    data = load_dataset("shapes", n=8, image_size=16)
    net = alexnet(4, small_input=True, width=0.125, seed=0)
    with pytest.raises(ValueError, match="pool=0 must be at least 1"):
        extract_features(net, data, "conv5", pool=0, progress=False)
    with pytest.raises(ValueError, match="layer=None is the embedding, a vector; drop pool"):
        extract_features(net, data, pool=2, progress=False)
    with pytest.raises(ValueError, match="layer 'fc7' gives vectors; drop pool"):
        extract_features(net, data, "fc7", pool=2, progress=False)
    assert extract_features(net, data, "conv5", pool=1, progress=False).shape == (8, 32)
    with pytest.raises(ValueError, match="holds no images"):
        extract_features(net, data.subset([]), progress=False)


# 7. Tracebacks left: a truncated annotation, a data set larger than memory.

def test_a_truncated_annotation_names_the_file(small_run, tmp_path, capsys):
    from dctutor.voc import VOCClassification

    voc = _voc_copy(small_run, tmp_path, 6)
    devkit = voc / "VOCdevkit" / "VOC2007"
    first = (devkit / "ImageSets" / "Main" / "trainval.txt").read_text().split()[0]
    annotation = devkit / "Annotations" / f"{first}.xml"
    annotation.write_bytes(annotation.read_bytes()[:50])
    with pytest.raises(ValueError, match=f"annotation {annotation} is not valid XML"):
        VOCClassification(voc, "trainval", image_size=16, progress=False)
    err = _one_line_error(capsys, ["transfer", "--run", str(small_run / "run"), "--voc", str(voc), "--train-split",
                                   "trainval", "--test-split", "test", "--image-size", "16"])
    assert annotation.name in err and "is not valid XML" in err


def test_a_data_set_larger_than_memory_suggests_streaming(tmp_path, monkeypatch, capsys):
    import dctutor.folder as folder

    root = _tree(tmp_path / "tree")

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 14.6 GiB for an array")

    monkeypatch.setattr(folder.np, "empty", no_memory)
    with pytest.raises(MemoryError, match="12 images of 8x8 px need .* GiB, .*stream=True, the CLI's --stream"):
        load_dataset(f"folder:{root}", image_size=8)
    err = _one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), "--dataset", f"folder:{root}",
                                   *TINY[2:], "--n", "12", "--k", "3", "--image-size", "8"])
    assert "--stream" in err and "run the same command again" not in err


# 8. Advice that fits the failure.

@pytest.mark.parametrize("error, fix", [
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4314"), "free space"),
    (OSError(errno.ENOSPC, "No space left on device", "history.csv.tmp"), "free space"),
    (OSError(errno.EFBIG, "File too large", "checkpoint.pt.tmp"), "free space"),
])
def test_a_full_disk_says_free_space_then_resume(tmp_path, capsys, monkeypatch, error, fix):
    import dctutor.runs as runs

    out = _after_first_epoch(tmp_path, (CHECKPOINT, SETTINGS, "history.json", "history.csv"))
    before = (out / CHECKPOINT).read_bytes()

    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(runs.torch, "save", full)
    monkeypatch.setattr("dctutor.cli.write_history", full)
    err = _one_line_error(capsys, ["train", "--out", str(out), *TINY, "--epochs", "2"])
    assert fix in err and "run the same command again to resume" in err
    assert (out / CHECKPOINT).read_bytes() == before and not list(out.glob("*.tmp"))
    monkeypatch.undo()
    assert main(["train", "--out", str(out), *TINY, "--epochs", "2"]) == 0


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_an_out_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, monkeypatch, code):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr("dctutor.cli.load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    err = _one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), *TINY])
    assert os.strerror(code) in err and "change its permissions, or pick a path" in err and "resume" not in err


@pytest.mark.parametrize("error, fix", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 274877906944 bytes"), "ran out of memory: lower --batch-size, --width or --n-images"),
    (RuntimeError("Tensor.item() cannot be called on meta tensors"), "use --device cpu or cuda"),
    (RuntimeError("Given input size: (8x2x2). Calculated output size: (8x0x0). Output size is too small"),
     "raise --image-size or use --small-input auto"),
])
def test_torch_failures_get_the_fix_that_fits_not_a_rerun(tmp_path, capsys, monkeypatch, error, fix):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("dctutor.cli.train_deepcluster", fail)
    err = _one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), *TINY])
    assert fix in err and "run the same command again" not in err


def test_images_too_small_for_the_imagenet_stem_are_refused_before_loading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dctutor.cli.load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    err = _one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), *TINY, "--small-input", "no",
                                   "--image-size", "16"])
    assert "image_size=16 is too small for alexnet's ImageNet stem" in err and "--small-input auto or yes" in err


def test_a_huge_width_fails_in_one_line_before_loading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dctutor.cli.load_dataset", lambda *a, **k: pytest.fail("data loaded"))

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr("dctutor.cli.BACKBONES", {"alexnet": no_memory})
    err = _one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), *TINY])
    assert "ran out of memory" in err and "--width" in err and "resume" not in err.split("once a checkpoint")[0]


@pytest.mark.parametrize("stream", [False, True], ids=["memory", "streamed"])
def test_a_file_gone_from_the_folder_says_the_data_changed_and_names_it(tmp_path, capsys, stream):
    root = _tree(tmp_path / "tree", n=6)
    out = tmp_path / "run"
    all_images = [a for i, a in enumerate(TINY) if "--n" not in TINY[max(i - 1, 0):i + 1]]
    argv = ["train", "--out", str(out), *all_images, "--dataset", f"folder:{root}", "--k", "3",
            "--image-size", "8", "--pca-dim", "8", "--batch-size", "8"] + (["--stream", "--workers", "0"] * stream)
    assert main([*argv, "--epochs", "1"]) == 0
    (root / "train" / "cat" / "3.png").unlink()
    before = (out / CHECKPOINT).read_bytes()
    err = _one_line_error(capsys, [*argv, "--epochs", "2"])
    assert "was trained on other images: the data set changed" in err and "cat/3.png is gone" in err
    assert "damaged" not in err and "move it away" not in err
    assert (out / CHECKPOINT).read_bytes() == before


def test_a_file_that_vanishes_while_streaming_is_named(tmp_path):
    from dctutor.stream import pixel_hash

    root = _tree(tmp_path / "tree")
    data = load_dataset(f"folder:{root}", image_size=8, stream=True, workers=1)
    (root / "train" / "ship" / "2.png").unlink()
    with pytest.raises(FileNotFoundError, match="ship/2.png' has vanished since the folder was listed: the data set "
                                                "changed"):
        pixel_hash(data.images)
