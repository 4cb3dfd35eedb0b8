"""Streaming a folder from disk gives the loop the same pixels, batches and fingerprint as memory."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import dctutor.stream as stream
from dctutor.cli import main
from dctutor.data import load_dataset
from dctutor.deepcluster import DeepClusterConfig, train_deepcluster
from dctutor.models import alexnet
from dctutor.stream import FolderImages, batches, pixel_hash


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b", "c"):
            (root / split / label).mkdir(parents=True)
            for i in range(24):
                # Different sizes, so decoding resizes, as it does on a real folder.
                side = int(rng.integers(12, 40))
                Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
                    root / split / label / f"{i}.png")
    return root


def test_streamed_pixels_equal_the_decoded_tensor(tree):
    memory = load_dataset(f"folder:{tree}", image_size=16)
    streamed = load_dataset(f"folder:{tree}", image_size=16, stream=True, workers=2)
    assert isinstance(streamed.images, FolderImages) and streamed.images.shape == memory.images.shape
    assert torch.equal(streamed.targets, memory.targets) and streamed.classes == memory.classes
    order = torch.randperm(len(memory), generator=torch.Generator().manual_seed(0))
    index = list(order.split(10))
    for ours, theirs in zip(batches(streamed.images, index), batches(memory.images, index), strict=True):
        assert torch.equal(ours, theirs)
    assert torch.equal(streamed.images.decode(), memory.images)
    assert torch.equal(streamed.images[5], memory.images[5])
    assert pixel_hash(streamed.images) == pixel_hash(memory.images)
    assert pixel_hash(streamed.images[1:]) != pixel_hash(memory.images)
    sub = load_dataset(f"folder:{tree}", image_size=16, stream=True, n=30, seed=3)
    assert torch.equal(sub.images.decode(), load_dataset(f"folder:{tree}", image_size=16, n=30, seed=3).images)


def test_selection_stays_on_disk_and_decoding_is_lazy(tree, monkeypatch):
    images = load_dataset(f"folder:{tree}", image_size=16, stream=True, workers=0).images
    decoded = []
    real = stream.decode_file
    monkeypatch.setattr(stream, "decode_file", lambda file, size: decoded.append(file) or real(file, size))
    sub = images[torch.tensor([3, 1, 2])]
    assert isinstance(sub, FolderImages) and sub.files == [images.files[i] for i in (3, 1, 2)] and not decoded
    first = next(batches(images, [slice(0, 8), slice(8, 16), slice(16, 24)]))
    assert first.shape == (8, 3, 16, 16) and len(decoded) == 8, "only the batch asked for is decoded"


def test_the_loop_trains_alike_from_memory_and_from_disk(tree, tmp_path):
    config = DeepClusterConfig(k=4, epochs=2, batch_size=16, pca_dim=8, kmeans_iters=5)
    runs = {}
    for name, ds in (("memory", load_dataset(f"folder:{tree}", image_size=16)),
                     ("disk", load_dataset(f"folder:{tree}", image_size=16, stream=True, workers=2))):
        model = alexnet(4, small_input=True, width=0.125, seed=0)
        runs[name] = train_deepcluster(model, ds, config, out_dir=tmp_path / name, device="cpu", progress=False)
    assert np.array_equal(runs["memory"].labels, runs["disk"].labels)
    assert [r["loss"] for r in runs["memory"].history] == pytest.approx([r["loss"] for r in runs["disk"].history],
                                                                        rel=1e-5)
    # The fingerprint is the same, so a run started in memory resumes from disk; other images are refused.
    more = DeepClusterConfig(k=4, epochs=3, batch_size=16, pca_dim=8, kmeans_iters=5)
    resumed = train_deepcluster(alexnet(4, small_input=True, width=0.125, seed=0),
                                load_dataset(f"folder:{tree}", image_size=16, stream=True), more,
                                out_dir=tmp_path / "memory", device="cpu", progress=False)
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2]
    with pytest.raises(ValueError, match="other images"):
        train_deepcluster(alexnet(4, small_input=True, width=0.125, seed=0),
                          load_dataset(f"folder:{tree}", "test", image_size=16, stream=True), more,
                          out_dir=tmp_path / "disk", device="cpu", progress=False)


def test_cli_streams_trains_and_probes(tree, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--dataset", f"folder:{tree}", "--image-size", "16", "--k", "4",
            "--width", "0.125", "--pca-dim", "8", "--batch-size", "16", "--kmeans-iters", "5", "--no-progress",
            "--device", "cpu"]
    assert main([*args, "--epochs", "1", "--stream", "--workers", "1"]) == 0
    assert json.loads((out / "run.json").read_text())["stream"] is True
    assert main(["probe", "--run", str(out), "--epochs", "1", "--knn-k", "3", "--layers", "conv5",
                 "--min-steps", "2"]) == 0
    # Streaming is how the data are read, not what they are: the run resumes in memory.
    assert main([*args, "--epochs", "2"]) == 0
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [0, 1]


def test_bad_streaming_input_is_one_line(tree, tmp_path, capsys):
    with pytest.raises(ValueError, match="stream=True reads a 'folder:<path>' tree"):
        load_dataset("shapes", stream=True)
    with pytest.raises(TypeError, match="stream must be True or False"):
        load_dataset(f"folder:{tree}", stream="yes")
    with pytest.raises(ValueError, match="workers=-1"):
        load_dataset(f"folder:{tree}", stream=True, workers=-1)
    broken = tmp_path / "broken" / "a"
    broken.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (8, 8)).save(broken / f"{i}.png")
    (broken / "3.png").write_bytes(b"not an image")
    images = load_dataset(f"folder:{broken.parent}", image_size=8, stream=True, workers=1).images
    with pytest.raises(ValueError) as err:
        list(batches(images, [slice(0, 4)]))
    assert str(err.value).startswith("cannot decode image") and "3.png" in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_refuses_stream_without_a_folder_and_absurd_worker_counts(tree, tmp_path, capsys):
    base = ["train", "--out", str(tmp_path / "r"), "--no-progress", "--device", "cpu", "--epochs", "1"]
    with pytest.raises(SystemExit) as exit_:
        main([*base, "--dataset", "shapes", "--stream"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--stream reads a folder: data set" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main([*base, "--dataset", f"folder:{tree}", "--stream", "--workers", "100000"])
    err = capsys.readouterr().err
    assert "workers=100000 must be at most" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists(), "nothing is written for a refused run"


@pytest.mark.realdata
def test_cifar10_jpegs_stream_to_the_pixels_memory_holds(tmp_path, shared_data):
    import tarfile

    archive = shared_data / "cifar10-jpeg.tar.gz"
    if not archive.exists():
        pytest.skip("cifar10-jpeg.tar.gz is absent (set DCTUTOR_SHARED_DATA)")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, members=[m for m in tar.getmembers() if m.name.startswith(("test", "./test"))],
                       filter="data")
    root = next(p.parent for p in tmp_path.rglob("test") if p.is_dir())
    memory = load_dataset(f"folder:{root}", "test", n=2000, seed=1)
    streamed = load_dataset(f"folder:{root}", "test", n=2000, seed=1, stream=True, workers=2)
    assert pixel_hash(streamed.images) == pixel_hash(memory.images)
    assert torch.equal(streamed.targets, memory.targets)
