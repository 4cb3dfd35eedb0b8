import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import VOCDetection

from dctutor.voc import VOC_CLASSES, VOCClassification, parse_annotation
from dctutor.voc_standin import STANDIN_CLASSES, make_voc_standin

from conftest import SHARED_DATA

SHARED = SHARED_DATA / "voc2007-trainval-256.tar.gz"


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    make_voc_standin(root, n_train=40, n_val=30, n_test=20, seed=3, image_size=48, progress=False)
    return root


def test_official_class_order():
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[14] == "person"
    assert VOC_CLASSES[-1] == "tvmonitor" and len(set(STANDIN_CLASSES.values())) == 20


def test_standin_has_the_real_layout_and_loads_through_torchvision(standin):
    voc = standin / "VOCdevkit" / "VOC2007"
    main = voc / "ImageSets" / "Main"
    for split, n in (("train", 40), ("val", 30), ("trainval", 70), ("test", 20)):
        ds = VOCDetection(str(standin), year="2007", image_set=split, download=False)
        assert len(ds) == n and len((main / f"{split}.txt").read_text().split()) == n
        assert (main / f"cat_{split}.txt").is_file()
    image, target = VOCDetection(str(standin), year="2007", image_set="train")[0]
    assert image.size == (48, 48) and image.mode == "RGB"
    objects = target["annotation"]["object"]
    assert objects and all(o["name"] in VOC_CLASSES and set(o["bndbox"]) == {"xmin", "ymin", "xmax", "ymax"}
                           for o in objects)
    train = set((main / "train.txt").read_text().split())
    assert not train & set((main / "val.txt").read_text().split())
    assert not train & set((main / "test.txt").read_text().split())


def test_targets_and_difficult_mask_match_the_xml(standin):
    ds = VOCClassification(standin, "trainval", image_size=32, progress=False)
    assert ds.images.shape == (70, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.targets.shape == ds.mask.shape == (70, 20)
    n_masked = 0
    for i, image_id in enumerate(ds.ids):
        root = ET.parse(standin / "VOCdevkit" / "VOC2007" / "Annotations" / f"{image_id}.xml").getroot()
        easy = {o.findtext("name") for o in root.iter("object") if o.findtext("difficult") == "0"}
        hard = {o.findtext("name") for o in root.iter("object") if o.findtext("difficult") == "1"}
        for c, name in enumerate(VOC_CLASSES):
            assert ds.targets[i, c] == (name in easy)
            assert ds.mask[i, c] == (0 if (name in hard and name not in easy) else 1)
        n_masked += int((ds.mask[i] == 0).sum())
    assert n_masked > 0, "the stand-in should mark some classes difficult-only"
    # the per-class lists agree with the loader (1 / -1 / 0 as in the devkit)
    lines = (standin / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "dog_trainval.txt").read_text().split("\n")
    flags = {line.split()[0]: int(line.split()[1]) for line in lines if line}
    c = VOC_CLASSES.index("dog")
    for i, image_id in enumerate(ds.ids):
        expected = 0 if ds.mask[i, c] == 0 else (1 if ds.targets[i, c] else -1)
        assert flags[image_id] == expected


def test_parse_annotation_difficult_rules():
    objs = [{"name": "cat", "difficult": "1"}, {"name": "cat", "difficult": "0"},
            {"name": "dog", "difficult": "1"}, {"name": "car", "difficult": "0"}]
    target, mask = parse_annotation({"annotation": {"object": objs}})
    cat, dog, car = (VOC_CLASSES.index(n) for n in ("cat", "dog", "car"))
    assert target[cat] == 1 and mask[cat] == 1  # one easy cat is enough
    assert target[dog] == 0 and mask[dog] == 0  # only difficult dogs: ignored
    assert target[car] == 1 and target.sum() == 2 and mask.sum() == 19
    with pytest.raises(ValueError, match="'unicorn' is not a VOC class"):
        parse_annotation({"object": [{"name": "unicorn", "difficult": "0"}]})


def test_standin_is_deterministic_and_idempotent(tmp_path, standin):
    make_voc_standin(tmp_path, n_train=40, n_val=30, n_test=20, seed=3, image_size=48, progress=False)
    a = standin / "VOCdevkit" / "VOC2007"
    b = tmp_path / "VOCdevkit" / "VOC2007"
    for rel in ("JPEGImages/000005.jpg", "Annotations/000005.xml", "ImageSets/Main/train.txt"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    stamp = (b / "JPEGImages" / "000001.jpg").stat().st_mtime_ns
    make_voc_standin(tmp_path, n_train=40, n_val=30, n_test=20, seed=3, image_size=48, progress=False)
    assert (b / "JPEGImages" / "000001.jpg").stat().st_mtime_ns == stamp  # skipped, not rewritten
    make_voc_standin(tmp_path, n_train=10, n_val=5, n_test=5, seed=4, image_size=48, progress=False)
    assert len((b / "ImageSets" / "Main" / "trainval.txt").read_text().split()) == 15


def test_standin_refuses_to_overwrite_a_real_copy(tmp_path):
    (tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(ValueError, match="not a dctutor stand-in"):
        make_voc_standin(tmp_path, n_train=2, n_val=2, n_test=2, progress=False)


def test_resize_modes(standin):
    sq = VOCClassification(standin, "test", image_size=24, resize="shorter", progress=False)
    assert sq.images.shape == (20, 3, 24, 24)
    x, t, m = sq[0]
    assert x.dtype == torch.float32 and x.shape == (3, 24, 24) and t.shape == m.shape == (20,)


def test_missing_voc_offline_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"VOCdevkit.*download=True.*make_voc_standin"):
        VOCClassification(tmp_path, "train", progress=False)


def test_unknown_split_and_bad_values(standin):
    with pytest.raises(ValueError, match=r"split='training'.*\['train', 'val', 'trainval', 'test'\]"):
        VOCClassification(standin, "training")
    with pytest.raises(ValueError, match="image_size"):
        VOCClassification(standin, "train", image_size=4)
    with pytest.raises(ValueError, match="resize"):
        VOCClassification(standin, "train", resize="crop")
    with pytest.raises(ValueError, match="n_train"):
        make_voc_standin(standin, n_train=0)


def test_missing_split_list_and_corrupt_image(tmp_path):
    make_voc_standin(tmp_path, n_train=3, n_val=2, n_test=2, image_size=32, progress=False)
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    (voc / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no test set"):
        VOCClassification(tmp_path, "test", progress=False)
    (voc / "JPEGImages" / "000002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="000002.jpg"):
        VOCClassification(tmp_path, "train", progress=False)


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED.is_file(), reason="../shared/data/voc2007-trainval-256.tar.gz is absent")
def test_real_voc_val_annotations(tmp_path):
    import tarfile

    with tarfile.open(SHARED) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(("/val.txt", "/000005.xml", "/000005.jpg"))
                   or m.name.endswith("/Main/chair_val.txt")]
        tar.extractall(tmp_path, members=members, filter="data")
    main = tmp_path / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    (main / "val.txt").write_text("000005\n")
    ds = VOCClassification(tmp_path, "val", image_size=32, progress=False)
    flags = {l.split()[0]: int(l.split()[1]) for l in (main / "chair_val.txt").read_text().splitlines() if l}
    c = VOC_CLASSES.index("chair")
    assert ds.targets[0, c] == (flags["000005"] == 1) and ds.mask[0, c] == (flags["000005"] != 0)
    xml = ET.parse(tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000005.xml").getroot()
    names = {o.findtext("name") for o in xml.iter("object") if o.findtext("difficult", "0").strip() != "1"}
    assert {VOC_CLASSES[i] for i in np.flatnonzero(ds.targets[0].numpy())} == names
