from __future__ import annotations

import numpy as np
import torch

from tests.conftest import tiny_config
from trainer.data import ImageSet
from trainer.loaders import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    PAD,
    AugmentedImages,
    EvalBatches,
    TrainBatches,
    augment,
)


def _marker_image() -> np.ndarray:
    """Black image, one white pixel at (row 10, column 5): where it lands tells the crop offset and flip."""
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[10, 5] = 255
    return image


def _white_pixel(tensor: torch.Tensor) -> tuple[int, int]:
    red = tensor[0] * CIFAR10_STD[0] + CIFAR10_MEAN[0]
    rows, cols = torch.nonzero(red > 0.99, as_tuple=True)
    assert len(rows) == 1, "the marker pixel is cropped out only when the shift exceeds the padding"
    return int(rows[0]), int(cols[0])


def test_augment_crops_within_the_padding_and_flips_half_the_time() -> None:
    torch.manual_seed(0)
    shifts, flips = set(), 0
    draws = 2000
    for _ in range(draws):
        out = augment(_marker_image())
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        row, col = _white_pixel(out)
        flipped = abs(col - 5) > PAD  # a flip moves column 5 to 26, far beyond any crop shift
        flips += flipped
        shifts.add((row - 10, (31 - col if flipped else col) - 5))
    assert all(abs(dr) <= PAD and abs(dc) <= PAD for dr, dc in shifts)
    assert len(shifts) == (2 * PAD + 1) ** 2  # every offset of the 4-pixel padding occurs
    assert abs(flips / draws - 0.5) < 0.05  # p = 0.5, about 2.2 standard deviations at 2000 draws


def test_augment_normalises_per_channel() -> None:
    grey = np.full((32, 32, 3), 128, dtype=np.uint8)
    torch.manual_seed(1)
    out = augment(grey)
    centre = out[:, 12:20, 12:20]  # away from any padded border
    expected = [(128 / 255 - m) / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD, strict=True)]
    torch.testing.assert_close(centre.mean(dim=(1, 2)), torch.tensor(expected))


def test_labels_stay_with_their_images() -> None:
    # each image is filled with its own label value, so image and label can be checked against each other
    labels = np.arange(40) % 10
    images = np.repeat(labels.astype(np.uint8)[:, None, None, None] * 20, 32 * 32 * 3).reshape(40, 32, 32, 3)
    loader = TrainBatches(ImageSet(images, labels), tiny_config(batch_size=16, seed=5))
    seen = 0
    for inputs, batch_labels in loader.epoch(1):
        centre = inputs[:, 0, 16, 16] * CIFAR10_STD[0] + CIFAR10_MEAN[0]
        torch.testing.assert_close(centre, batch_labels.float() * 20 / 255, atol=1e-5, rtol=0)
        seen += len(batch_labels)
    assert seen == 40
    assert AugmentedImages(ImageSet(images, labels))[7][1] == 7


def test_each_epoch_is_reproducible_from_seed_and_epoch() -> None:
    labels = np.arange(64) % 10
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    images_set = ImageSet(images, labels)

    def epoch_batches(seed: int, epoch: int, workers: int) -> list[torch.Tensor]:
        batches = TrainBatches(images_set, tiny_config(seed=seed, num_workers=workers, batch_size=16))
        return [inputs for inputs, _ in batches.epoch(epoch)]

    first = epoch_batches(0, 2, 0)
    torch.manual_seed(123)  # unrelated RNG use in between must not matter
    assert all(torch.equal(a, b) for a, b in zip(first, epoch_batches(0, 2, 0), strict=True))
    assert not torch.equal(first[0], epoch_batches(0, 3, 0)[0])
    assert not torch.equal(first[0], epoch_batches(1, 2, 0)[0])
    with_workers = epoch_batches(0, 2, 2)
    assert all(torch.equal(a, b) for a, b in zip(with_workers, epoch_batches(0, 2, 2), strict=True))


def test_eval_batches_cover_every_image_once_in_order() -> None:
    labels = np.arange(50) % 10
    images = np.zeros((50, 32, 32, 3), dtype=np.uint8)
    batches = list(EvalBatches(ImageSet(images, labels), batch_size=16))
    assert [len(lbl) for _, lbl in batches] == [16, 16, 16, 2]
    assert torch.cat([lbl for _, lbl in batches]).tolist() == labels.tolist()
