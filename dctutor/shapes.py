"""A procedural image data set where shape is the label and colour is a nuisance.

Every image is drawn from its own random stream ``(seed, split, index)``, so the data set is
the same on every machine, any prefix of it is a valid smaller data set, and nothing has to be
downloaded. Colours of the shape and the background are random and independent of the class,
which makes the paper's point about colour shortcuts (Sec. 3.4, Fig. 3) measurable.
"""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES = ("circle", "triangle", "square", "star", "plus", "ring", "half_disk", "ell", "arrow", "bar")
_SUPERSAMPLE = 4  # draw large, then downsample: anti-aliased edges like a photo's


def _regular(n: int, r_in: float | None = None) -> np.ndarray:
    if r_in is None:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    t = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
    r = np.where(np.arange(2 * n) % 2 == 0, 1.0, r_in)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def outline(name: str) -> list[np.ndarray]:
    """Polygons in a unit box centred at 0; the first is filled, later ones are holes."""
    if name == "circle":
        return [_regular(48)]
    if name == "triangle":
        return [_regular(3)]
    if name == "square":
        return [_regular(4) / np.sqrt(2) * 1.25]
    if name == "star":
        return [_regular(5, 0.42)]
    if name == "plus":
        a, b = 0.3, 1.0
        return [np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a],
                          [-b, a], [-b, -a], [-a, -a]])]
    if name == "ring":
        return [_regular(48), 0.55 * _regular(48)]
    if name == "half_disk":
        t = np.linspace(0, np.pi, 25)
        return [np.stack([np.cos(t), np.sin(t) - 0.4], 1)]
    if name == "ell":
        return [np.array([[-0.8, -1], [-0.2, -1], [-0.2, 0.4], [0.8, 0.4], [0.8, 1], [-0.8, 1]])]
    if name == "arrow":
        return [np.array([[-1, -0.22], [0.1, -0.22], [0.1, -0.6], [1, 0], [0.1, 0.6], [0.1, 0.22], [-1, 0.22]])]
    if name == "bar":
        return [np.array([[-1, -0.25], [1, -0.25], [1, 0.25], [-1, 0.25]])]
    raise ValueError(f"unknown shape {name!r}; shapes are {list(SHAPE_CLASSES)}")


def _colour(rng: np.random.Generator, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 1.0), value)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_shape(label: int, rng: np.random.Generator, size: int = 32, clutter: int = 3) -> np.ndarray:
    """Draw one image of class ``label`` as an ``(size, size, 3)`` uint8 array.

    The shape gets a random colour, position, scale and rotation; the background a random
    colour of clearly different brightness (so the shape survives the grayscale step of the
    Sobel layer) and ``clutter`` thin random strokes.
    """
    big = size * _SUPERSAMPLE
    bright_shape = rng.uniform() < 0.5
    fg = _colour(rng, rng.uniform(0.75, 1.0) if bright_shape else rng.uniform(0.15, 0.4))
    bg = _colour(rng, rng.uniform(0.15, 0.4) if bright_shape else rng.uniform(0.75, 1.0))
    image = Image.new("RGB", (big, big), bg)
    pen = ImageDraw.Draw(image)
    for _ in range(clutter):
        x0, y0, x1, y1 = rng.uniform(0, big, 4)
        pen.line([(x0, y0), (x1, y1)], fill=_colour(rng, rng.uniform(0.2, 1.0)), width=max(1, big // 48))
    scale = rng.uniform(0.28, 0.42) * big
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = rng.uniform(0.4, 0.6, 2) * big
    for i, poly in enumerate(outline(SHAPE_CLASSES[label])):
        pts = poly @ rot.T * scale + centre
        pen.polygon([tuple(p) for p in pts], fill=fg if i == 0 else bg)
    return np.asarray(image.resize((size, size), Image.Resampling.BOX))


def make_shapes(n: int, seed: int = 0, size: int = 32, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, size, size, 3)`` uint8 and their labels, exactly balanced over the 10 classes.

    Labels cycle through the classes and are then shuffled with the seed, so any ``n`` that is a
    multiple of 10 has exactly ``n / 10`` images per class (otherwise counts differ by at most one).
    ``split`` selects an independent stream, so ``"train"`` and ``"test"`` never share an image.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int (number of images), got {n!r}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 pixels, got {size!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is unknown for shapes; use 'train' or 'test'")
    stream = 0 if split == "train" else 1
    labels = np.random.default_rng([seed, stream]).permutation(np.arange(n) % len(SHAPE_CLASSES))
    images = np.stack([draw_shape(int(y), np.random.default_rng([seed, stream, i + 1]), size)
                       for i, y in enumerate(labels)])
    return images, labels.astype(np.int64)
