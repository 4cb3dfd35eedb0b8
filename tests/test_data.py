from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dctutor.data import DATASETS, eval_transform, load_dataset
from dctutor.features import extract_features
from dctutor.models import alexnet
from dctutor.shapes import SHAPE_CLASSES, make_shapes

from conftest import SHARED_DATA

SHARED = SHARED_DATA / "cifar10-jpeg.tar.gz"


def test_shapes_are_deterministic_per_seed_and_balanced():
    a, ya = make_shapes(60, seed=5)
    b, yb = make_shapes(60, seed=5)
    c, _ = make_shapes(60, seed=6)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert not np.array_equal(a, c)
    assert np.bincount(ya, minlength=10).tolist() == [6] * 10
    assert a.shape == (60, 32, 32, 3) and a.dtype == np.uint8


def test_shapes_train_and_test_streams_differ_and_colour_is_not_the_label():
    train, y = make_shapes(200, seed=0, split="train")
    test, _ = make_shapes(200, seed=0, split="test")
    assert not np.array_equal(train[:10], test[:10])
    mean_rgb = train.reshape(200, -1, 3).mean(1)
    per_class = np.stack([mean_rgb[y == c].mean(0) for c in range(10)])
    assert per_class.std(0).max() < 0.25 * mean_rgb.std(0).max()  # colour varies within, not between classes


def test_load_dataset_shapes_and_digits():
    shapes = load_dataset("shapes", n=30, image_size=48)
    assert shapes.images.shape == (30, 3, 48, 48) and shapes.classes == list(SHAPE_CLASSES)
    x, y = shapes[0]
    assert x.dtype == torch.float32 and x.shape == (3, 48, 48) and 0 <= y < 10
    digits_train, digits_test = load_dataset("digits"), load_dataset("digits", "test")
    assert len(digits_train) + len(digits_test) == 1797
    assert digits_train.images.shape[1:] == (3, 32, 32)
    assert torch.equal(digits_train.images[:, 0], digits_train.images[:, 1])  # grayscale in 3 channels
    assert len(load_dataset("digits", n=100, seed=1)) == 100


def test_eval_transform_gives_network_inputs():
    img = load_dataset("shapes", n=10).images[0]
    assert eval_transform()(img).shape == (3, 32, 32)


def test_extract_features_shapes_and_pooling():
    data = load_dataset("shapes", n=20)
    net = alexnet(10, small_input=True, width=0.25, seed=0)
    net.train()
    embedding = extract_features(net, data, progress=False, batch_size=8)
    conv3 = extract_features(net, data, "conv3", pool=2, progress=False)
    assert net.training  # mode restored
    x = eval_transform()(data.images)
    with torch.no_grad():
        net.eval()
        np.testing.assert_allclose(embedding, net.embedding(x).numpy(), atol=1e-5)
        pooled = torch.nn.functional.adaptive_avg_pool2d(net.forward_layers(x, ["conv3"])["conv3"], 2)
        np.testing.assert_allclose(conv3, pooled.flatten(1).numpy(), atol=1e-5)
    assert conv3.shape == (20, 96 * 4) and (embedding < 0).any(), "the embedding is taken before the ReLU"


def _folder(tmp_path: Path, corrupt: bool = False) -> Path:
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    if corrupt:
        (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    return tmp_path


def test_folder_loads_splits_and_resizes(tmp_path):
    root = _folder(tmp_path)
    data = load_dataset(f"folder:{root}", "test", image_size=16)
    assert data.images.shape == (6, 3, 16, 16) and data.classes == ["cat", "dog"]
    assert data.targets.tolist() == [0, 0, 0, 1, 1, 1]


def test_folder_subset_decodes_only_the_kept_files(tmp_path):
    root = _folder(tmp_path)
    (root / "train" / "dog" / "3.png").write_bytes(b"not a png")  # the last file in sorted order
    full = load_dataset(f"folder:{root / 'test'}", image_size=16)
    part = load_dataset(f"folder:{root / 'test'}", image_size=16, n=4, seed=3)
    keep = np.sort(np.random.default_rng(3).choice(6, 4, replace=False))
    assert torch.equal(part.images, full.images[keep]) and part.targets.tolist() == full.targets[keep].tolist()
    assert 6 not in np.random.default_rng(0).choice(7, 1, replace=False)  # seed 0 skips the broken file
    train = load_dataset(f"folder:{root}", "train", image_size=16, n=1, seed=0)
    assert len(train) == 1
    with pytest.raises(ValueError, match="n=7 but"):
        load_dataset(f"folder:{root}", "test", n=7)


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*shapes"):
        load_dataset("imagenet")
    with pytest.raises(TypeError, match="name must be a string"):
        load_dataset(3)
    with pytest.raises(ValueError, match="n=0 must be at least 1"):
        load_dataset("shapes", n=0)
    with pytest.raises(ValueError, match="n=5000 but 'digits' has only"):
        load_dataset("digits", n=5000)
    with pytest.raises(ValueError, match="image_size=2 must be at least 8"):
        load_dataset("shapes", n=10, image_size=2)
    with pytest.raises(ValueError, match="split='val' is unknown for shapes"):
        load_dataset("shapes", "val", n=10)
    with pytest.raises(FileNotFoundError, match="CIFAR-10 is not under .*download=True"):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="STL-10 is not under"):
        load_dataset("stl10", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match=r"cannot decode image .*broken\.jpg"):
        load_dataset(f"folder:{_folder(tmp_path / 'c', corrupt=True)}")
    assert set(DATASETS) >= {"shapes", "digits", "cifar10", "stl10", "folder:<path>"}


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED.exists(), reason="cifar10-jpeg.tar.gz is absent (set DCTUTOR_SHARED_DATA)")
def test_cifar10_jpeg_folder(tmp_path):
    import tarfile

    with tarfile.open(SHARED) as tar:
        tar.extractall(tmp_path, members=[m for m in tar.getmembers() if m.name.startswith(("test", "./test"))],
                       filter="data")
    data = load_dataset(f"folder:{tmp_path}", "test")
    assert len(data) == 10_000 and data.classes[0] == "airplane"
    assert data.targets.bincount().tolist() == [1000] * 10


def test_hidden_folders_are_not_classes(tmp_path):
    for name in ("cat", "dog", ".ipynb_checkpoints"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / name / "a.png")
    (tmp_path / "cat" / ".hidden.png").write_bytes(b"junk")
    data = load_dataset(f"folder:{tmp_path}", image_size=8)
    assert data.classes == ["cat", "dog"] and len(data) == 2
    with pytest.raises(ValueError, match="needs a path"):
        load_dataset("folder:")


def test_16_bit_images_keep_their_brightness_and_float_images_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(tmp_path / "a" / "mid.png")
    data = load_dataset(f"folder:{tmp_path}", image_size=8)
    assert abs(int(data.images[0].float().mean()) - 128) <= 1, "a 16-bit mid-grey must not decode to white"
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)).save(tmp_path / "a" / "float.tiff")
    with pytest.raises(ValueError, match=r"float.tiff' has float pixels.*8-bit"):
        load_dataset(f"folder:{tmp_path}", image_size=8)


def test_a_flat_folder_is_the_train_split_and_refuses_another(tmp_path):
    """Without split folders every split would read the same images, and a probe would be scored on
    its training set: any split but 'train' is refused, naming the folders to make."""
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / name / "a.png")
    assert len(load_dataset(f"folder:{tmp_path}", "train", image_size=8)) == 2
    for split in ("test", "unlabeled"):
        with pytest.raises(ValueError, match=rf"split='{split}' but .* has no split folders.*{split}/<class>/"):
            load_dataset(f"folder:{tmp_path}", split, image_size=8)
