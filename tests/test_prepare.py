"""`dctutor prepare` on small fixtures in the upstream formats: CIFAR-10's pickled python batches and
STL-10's column-major binaries, with torchvision's checksum check patched here (the fixtures are
not the real files), never in the package."""
import pickle

import numpy as np
import pytest
from torchvision.datasets import CIFAR10, STL10, cifar

from dctutor.cli import main
from dctutor.data import load_dataset
from dctutor.prepare import prepare

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _top_bright(n: int, size: int) -> np.ndarray:
    """(n, size, size, 3) images, bright above and dark below, so a transposed copy shows."""
    images = np.full((n, size, size, 3), 30, np.uint8)
    images[:, : size // 2] = 220
    return images


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: True)  # the meta file's check
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for j, name in enumerate(files):
        labels = [(j + i) % 10 for i in range(4)]
        # Upstream rows hold the red plane, then green, then blue, each row-major.
        data = _top_bright(4, 32).transpose(0, 3, 1, 2).reshape(4, -1)
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": labels}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_CLASSES}))
    return tmp_path


@pytest.fixture
def stl_root(tmp_path, monkeypatch):
    monkeypatch.setattr(STL10, "_check_integrity", lambda self: True)
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    classes = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(classes) + "\n")
    for split, n in (("train", 6), ("test", 4)):
        # Upstream: each image's planes are stored column by column (Fortran order), labels 1-10.
        planes = _top_bright(n, 96).transpose(0, 3, 2, 1)
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(planes).tobytes())
        (folder / f"{split}_y.bin").write_bytes(np.arange(1, n + 1, dtype=np.uint8).tobytes())
    return tmp_path


def _brightness(data) -> tuple[float, float]:
    images = data.images.float()
    half = images.shape[-2] // 2
    return float(images[..., :half, :].mean()), float(images[..., half:, :].mean())


def test_cifar10_batches_become_the_folder_tree_the_benchmarks_read(cifar_root, tmp_path):
    out = prepare("cifar10", tmp_path / "cifar10-jpeg", root=cifar_root, progress=False)
    train, test = (load_dataset(f"folder:{out}", split) for split in ("train", "test"))
    assert (len(train), len(test)) == (20, 4)
    names = [train.classes[t] for t in train.targets.tolist()]
    expected = [CIFAR_CLASSES[(j + i) % 10] for j in range(5) for i in range(4)]
    assert sorted(names) == sorted(expected), "each image sits in the folder of its label"
    top, bottom = _brightness(train)
    assert top > 200 and bottom < 50, "rows and colour planes are read in the upstream order"
    assert not (tmp_path / "cifar10-jpeg.partial").exists()


def test_stl10_binaries_are_read_column_major_with_zero_based_labels(stl_root, tmp_path):
    out = prepare("stl10", tmp_path / "stl10-jpeg", root=stl_root, progress=False)
    train = load_dataset(f"folder:{out}", "train", image_size=96)
    top, bottom = _brightness(train)
    assert top > 200 and bottom < 50, "an STL-10 image must not come out transposed"
    # Labels 1..6 in the file are classes 0..5: airplane .. dog, one image each.
    assert sorted(train.classes) == sorted(["airplane", "bird", "car", "cat", "deer", "dog"])
    assert len(load_dataset(f"folder:{out}", "test", image_size=96)) == 4


def test_prepare_never_overwrites_and_names_the_fix(cifar_root, tmp_path, capsys):
    out = tmp_path / "kept"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit) as stop:
        main(["prepare", "cifar10", "--data-root", str(cifar_root), "--out", str(out)])
    assert stop.value.code == 2
    assert "already exists; remove it or choose another out folder" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me"
    # A folder named like prepare's half-written tree, but not left by prepare, is kept too.
    theirs = tmp_path / "new.partial"
    theirs.mkdir()
    (theirs / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="was not left by prepare"):
        prepare("cifar10", tmp_path / "new", root=cifar_root, progress=False)
    assert (theirs / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("command", ["prepare", "train"])
def test_missing_public_files_say_where_they_go_in_cli_words(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, *(["stl10"] if command == "prepare" else ["--dataset", "stl10"]),
              "--data-root", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "STL-10 is not under" in err[0]
    assert "--download" in err[0] and "--data-root" in err[0] and "download=True" not in err[0], \
        "the CLI names its own options, not the Python API's"
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()
