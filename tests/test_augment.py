"""The batched augmentation equals torchvision's per-image transform, pixel for pixel given the same
boxes, and in distribution for the boxes and flips it draws."""
import pytest
import torch
from scipy.stats import ks_2samp
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dctutor.augment import BatchAugment, augment_batch, crop_params
from dctutor.data import eval_transform


def _images(n, h=32, w=32, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", [(32, 32), (24, 40)])
def test_same_boxes_give_torchvisions_pixels(shape):
    h, w = shape
    images = _images(48, h, w)
    gen = torch.Generator().manual_seed(1)
    boxes = crop_params(48, h, w, (0.08, 1.0), (3 / 4, 4 / 3), gen)
    flips = torch.rand(48, generator=gen) < 0.5
    size = max(h, w)  # never smaller than a crop: the case the loop meets
    ours = augment_batch(images, boxes, flips, size)
    normalise = eval_transform()
    theirs = []
    for image, box, flip in zip(images, boxes.tolist(), flips):
        crop = TF.resized_crop(image.float(), *box, [size, size], antialias=True) / 255
        theirs.append(normalise.transforms[1](TF.horizontal_flip(crop) if flip else crop))
    assert torch.allclose(ours, torch.stack(theirs), atol=1e-4)


def test_boxes_follow_torchvisions_distribution():
    n = 4000
    ours = crop_params(n, 32, 32, (0.3, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    image = torch.zeros(3, 32, 32)
    theirs = torch.tensor([v2.RandomResizedCrop.get_params(image, [0.3, 1.0], [3 / 4, 4 / 3]) for _ in range(n)])
    for column in range(4):  # top, left, height, width
        assert ks_2samp(ours[:, column].numpy(), theirs[:, column].numpy()).pvalue > 1e-3
    area = (ours[:, 2] * ours[:, 3]).double() / 1024
    assert 0.28 <= float(area.min()) and float(area.max()) <= 1.0
    assert (ours[:, 0] + ours[:, 2] <= 32).all() and (ours[:, 1] + ours[:, 3] <= 32).all()


def test_impossible_ratios_fall_back_to_the_centre_crop_like_torchvision():
    boxes = crop_params(10, 10, 40, (0.9, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0))
    image = torch.zeros(3, 10, 40)
    expected = v2.RandomResizedCrop.get_params(image, [0.9, 1.0], [1.0, 1.0])
    assert {tuple(b) for b in boxes.tolist()} == {tuple(expected)}


def test_a_seed_fixes_the_batch_and_half_the_images_are_mirrored():
    augment = BatchAugment(32)
    images = _images(256)
    assert torch.equal(augment(images, torch.Generator().manual_seed(3)), augment(images, torch.Generator().manual_seed(3)))
    assert not torch.equal(augment(images, torch.Generator().manual_seed(3)), augment(images, torch.Generator().manual_seed(4)))
    # Whole-image boxes: every output is the image itself or its mirror, so flips can be counted.
    whole = BatchAugment(32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    images = _images(4000)
    out, plain = whole(images, torch.Generator().manual_seed(5)), eval_transform()(images)
    mirrored = (out - plain.flip(-1)).abs().amax((1, 2, 3)) < 1e-5
    unchanged = (out - plain).abs().amax((1, 2, 3)) < 1e-5
    assert bool((mirrored ^ unchanged).all())
    assert 0.47 < float(mirrored.float().mean()) < 0.53


def test_bad_scale_names_the_parameter():
    with pytest.raises(ValueError, match="scale"):
        BatchAugment(32, scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="scale"):
        BatchAugment(32, scale=(0.5, 0.3))


def test_central_crop_gives_torchvisions_centre_crop_resized_back():
    from dctutor.features import central_crop

    images = _images(8, 32, 32)
    ours = central_crop(32, 0.875)(images)
    normalise = eval_transform().transforms[1]
    theirs = torch.stack([normalise(TF.resize(TF.center_crop(image.float(), [28, 28]), [32, 32], antialias=True) / 255)
                          for image in images])
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert torch.allclose(central_crop(32, 1.0)(images), eval_transform()(images), atol=1e-6)
    for bad, error in ((0.0, ValueError), (1.5, ValueError), ("half", TypeError), (True, TypeError)):
        with pytest.raises(error, match="crop"):
            central_crop(32, bad)
