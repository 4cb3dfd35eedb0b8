"""An offline stand-in for PASCAL VOC 2007, written in the real folder layout.

:func:`make_voc_standin` draws 20 "classes" of procedural shapes with 1-3 objects per image and
writes JPEGs, XML annotations and the ImageSets lists exactly as VOC 2007 has them, so
:class:`dctutor.voc.VOCClassification` (and torchvision's ``VOCDetection``) read it unchanged and
chapter 5 runs with no network.
"""
from __future__ import annotations

import colorsys
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .progress import tqdm
from .shapes import SHAPE_CLASSES, outline
from .voc import VOC_CLASSES, parse_annotation

STANDIN_MARKER = "dctutor_standin.json"


def _standin_style(index: int) -> tuple[str, bool]:
    """Stand-in class ``index`` is drawn as shape ``SHAPE_CLASSES[index % 10]``, filled for the first
    ten VOC classes and as an outline for the last ten."""
    return SHAPE_CLASSES[index % len(SHAPE_CLASSES)], index < len(SHAPE_CLASSES)


STANDIN_CLASSES = {name: f"{'filled' if _standin_style(i)[1] else 'outlined'} {_standin_style(i)[0]}"
                   for i, name in enumerate(VOC_CLASSES)}


def _colour(rng: np.random.Generator, bright: bool) -> tuple[int, int, int]:
    value = rng.uniform(0.75, 1.0) if bright else rng.uniform(0.12, 0.4)
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.4, 1.0), value)
    return int(r * 255), int(g * 255), int(b * 255)


def _compose(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[dict]]:
    """One stand-in image with 1-3 objects; returns the pixels and the objects (name, box, difficult)."""
    ss = 2  # supersampling for anti-aliased edges
    big = size * ss
    bright_bg = rng.uniform() < 0.5
    image = Image.new("RGB", (big, big), _colour(rng, bright_bg))
    pen = ImageDraw.Draw(image)
    for _ in range(4):  # clutter strokes, as in dctutor.shapes
        x0, y0, x1, y1 = rng.uniform(0, big, 4)
        pen.line([(x0, y0), (x1, y1)], fill=_colour(rng, rng.uniform() < 0.5), width=max(1, big // 64))
    n_objects = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
    objects = []
    for _ in range(n_objects):
        label = int(rng.integers(len(VOC_CLASSES)))
        shape, filled = _standin_style(label)
        difficult = rng.uniform() < 0.12  # small and faint, like VOC's hard-to-recognise objects
        radius = (rng.uniform(0.06, 0.09) if difficult else rng.uniform(0.13, 0.26)) * big
        centre = rng.uniform(radius, big - radius, 2)
        angle = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        fg = _colour(rng, not bright_bg)
        polys = [poly @ rot.T * radius + centre for poly in outline(shape)]
        for i, pts in enumerate(polys):
            xy = [tuple(p) for p in pts]
            if filled:
                pen.polygon(xy, fill=fg if i == 0 else image.getpixel((0, 0)))
            else:
                pen.line(xy + [xy[0]], fill=fg, width=max(2, int(radius / 5)), joint="curve")
        pts = np.concatenate(polys) / ss
        lo = np.clip(np.floor(pts.min(0)), 0, size - 1).astype(int) + 1  # VOC boxes are 1-based, inclusive
        hi = np.clip(np.ceil(pts.max(0)), 1, size).astype(int)
        objects.append({"name": VOC_CLASSES[label], "difficult": int(difficult),
                        "bndbox": (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))})
    return np.asarray(image.resize((size, size), Image.Resampling.BOX)), objects


def _annotation_xml(image_id: str, size: int, objects: list[dict]) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "dctutor offline stand-in (procedural shapes)"
    dims = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(dims, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = str(obj["difficult"])
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["bndbox"]):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.ElementTree(root)


def make_voc_standin(root: str | Path = "data", *, n_train: int = 300, n_val: int = 300, n_test: int = 300,
                     seed: int = 0, image_size: int = 96, progress: bool = True) -> Path:
    """Write an offline stand-in for VOC 2007 under ``root/VOCdevkit/VOC2007`` and return that folder.

    The layout is the real one (``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml`` with each object's
    name, bndbox and difficult flag, ``ImageSets/Main/{train,val,trainval,test}.txt`` and the
    per-class ``<class>_<split>.txt`` lists with 1 / -1 / 0), so ``VOCDetection`` and
    :class:`VOCClassification` read it unchanged. Each image holds 1-3 objects on a cluttered
    background of random colour; the 20 VOC class names stand for 10 procedural shapes
    (:data:`dctutor.shapes.SHAPE_CLASSES`) drawn filled (the first ten names: aeroplane = filled
    circle, ...) or as outlines (the last ten: diningtable = outlined circle, ...), see
    :data:`STANDIN_CLASSES`. About one object in eight is drawn small and marked difficult.

    Deterministic: image ``i`` depends only on ``(seed, i)``. Idempotent: a stand-in already written
    with the same parameters is kept; one written with other parameters is replaced. A folder that
    holds a real VOC copy (no stand-in marker) is never touched.
    """
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} int, got {value!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 16 <= image_size <= 512:
        raise ValueError(f"image_size must be an int between 16 and 512 pixels, got {image_size!r}")
    voc_root = Path(root) / "VOCdevkit" / "VOC2007"
    params = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed, "image_size": image_size,
              "version": 1}
    marker = voc_root / STANDIN_MARKER
    if marker.is_file():
        if json.loads(marker.read_text()) == params:
            return voc_root
        shutil.rmtree(voc_root)
    elif voc_root.exists():
        raise ValueError(f"{voc_root} exists and is not a dctutor stand-in (no {STANDIN_MARKER}); refusing to "
                         f"overwrite it. Use another root for the stand-in.")
    tmp = voc_root.with_name("VOC2007.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (tmp / sub).mkdir(parents=True)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    lists: dict[str, list[str]] = {}
    labels: dict[str, np.ndarray] = {}
    index = 0
    total = n_train + n_val + n_test
    bar = tqdm(total=total, desc="VOC stand-in", disable=not progress, leave=False)
    for split, count in counts.items():
        lists[split], split_labels = [], []
        for _ in range(count):
            index += 1
            image_id = f"{index:06d}"
            pixels, objects = _compose(np.random.default_rng([seed, index]), image_size)
            Image.fromarray(pixels).save(tmp / "JPEGImages" / f"{image_id}.jpg", quality=92)
            _annotation_xml(image_id, image_size, objects).write(tmp / "Annotations" / f"{image_id}.xml")
            target, mask = parse_annotation({"object": objects})
            split_labels.append(np.where(mask == 0, 0, np.where(target == 1, 1, -1)))
            lists[split].append(image_id)
            bar.update()
        labels[split] = np.array(split_labels).reshape(-1, len(VOC_CLASSES))
    bar.close()
    lists["trainval"] = lists["train"] + lists["val"]
    labels["trainval"] = np.concatenate([labels["train"], labels["val"]])
    main = tmp / "ImageSets" / "Main"
    for split, ids in lists.items():
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for c, name in enumerate(VOC_CLASSES):
            (main / f"{name}_{split}.txt").write_text(
                "".join(f"{i} {int(v):2d}\n" for i, v in zip(ids, labels[split][:, c])))
    (tmp / STANDIN_MARKER).write_text(json.dumps(params))
    tmp.rename(voc_root)
    return voc_root
