"""`loader = "gpu"`: the whole split as uint8 on the device, each batch augmented there in a few kernels.

No worker processes and no per-image Python: an epoch draws its permutation, crop offsets and flips up
front from a torch.Generator on the device seeded with (seed, epoch), and each batch is one gather from
the zero-padded images (random 32x32 crop of the 4-pixel padded image, flip with p = 0.5) followed by
per-channel normalisation: the augmentation of `trainer.loaders.augment`, done for a whole batch at once.
The same code runs with device "cpu", which is how the tests check it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from trainer.config import TrainConfig
from trainer.data import ImageSet
from trainer.loaders import CIFAR10_MEAN, CIFAR10_STD, PAD, epoch_seed, images_per_epoch, rank_share
from trainer.ranks import SINGLE, Ranks

SIZE = 32  # CIFAR-10 images are 32x32; the crop keeps that size


class Normalizer:
    """uint8 NHWC pixels -> normalised float32 NCHW, ((x / 255) - mean) / std as one multiply-add."""

    def __init__(self, device: torch.device, *, channels_last: bool) -> None:
        mean = torch.tensor(CIFAR10_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD, device=device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = mean / std
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        # permute keeps NHWC in memory: channels_last strides for free; contiguous() copies only if asked
        nchw = pixels.permute(0, 3, 1, 2).float()
        return (nchw * self.scale - self.shift).contiguous(memory_format=self.memory_format)


def _device_tensors(images: ImageSet, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = torch.from_numpy(images.images).to(device)  # (N, 32, 32, 3) uint8
    return pixels, torch.from_numpy(images.labels).to(device)


def crop_and_flip(
    padded: torch.Tensor, index: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor
) -> torch.Tensor:
    """Crops of padded (N, 32+2*PAD, 32+2*PAD, C) images, as one gather.

    Args:
        padded: zero-padded uint8 images, NHWC.
        index: (B,) which images.
        shifts: (B, 2) top and left corners of the crops in the padded images, each in 0..2*PAD.
        flips: (B,) bool, mirror the crop left-right.

    Returns:
        (B, 32, 32, C) crops, same dtype as `padded`.
    """
    offsets = torch.arange(SIZE, device=padded.device)
    rows = shifts[:, :1] + offsets  # (B, 32)
    cols = shifts[:, 1:] + torch.where(flips[:, None], offsets.flip(0), offsets)  # (B, 32)
    return padded[index[:, None, None], rows[:, :, None], cols[:, None, :]]


class GpuTrainBatches:
    """Shuffled, augmented training batches on `config.device`, a function of (seed, epoch) only.

    With several ranks (trainer.distributed) every rank draws the same epoch (order, crops, flips) and
    takes its share of each global batch (`rank_share`); `images` counts all ranks' images.
    """

    def __init__(self, images: ImageSet, config: TrainConfig, ranks: Ranks = SINGLE) -> None:
        self.device = torch.device(config.device)
        pixels, self.labels = _device_tensors(images, self.device)
        # Padded once for the whole split: every crop is then a plain gather. (N, 40, 40, 3) uint8.
        self.padded = F.pad(pixels, (0, 0, PAD, PAD, PAD, PAD))
        self.normalize = Normalizer(self.device, channels_last=config.channels_last)
        self.generator = torch.Generator(device=self.device)
        self.seed = config.seed
        self.batch_size = config.batch_size
        self.ranks = ranks
        self.total = len(images)
        self.images = images_per_epoch(len(images), config.batch_size, ranks)

    def __len__(self) -> int:
        return math.ceil(self.images / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch; every random draw of the epoch is made here, on the device."""
        self.generator.manual_seed(epoch_seed(self.seed, epoch))
        n, device, generator = self.total, self.device, self.generator
        order = torch.randperm(n, device=device, generator=generator)
        shifts = torch.randint(0, 2 * PAD + 1, (n, 2), device=device, generator=generator)
        flips = torch.rand(n, device=device, generator=generator) < 0.5
        return self._batches(order, shifts, flips)

    def _batches(
        self, order: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self.images, self.batch_size):  # slicing on the device: no host sync
            batch = slice(start, start + self.batch_size)
            index = rank_share(order[batch], self.ranks)
            crops = crop_and_flip(
                self.padded,
                index,
                rank_share(shifts[batch], self.ranks),
                rank_share(flips[batch], self.ranks),
            )
            yield self.normalize(crops), self.labels[index]


class GpuEvalBatches:
    """Fixed-order evaluation batches from uint8 images on the device, normalised per batch."""

    def __init__(self, images: ImageSet, batch_size: int, config: TrainConfig) -> None:
        device = torch.device(config.device)
        self.pixels, self.labels = _device_tensors(images, device)
        self.normalize = Normalizer(device, channels_last=config.channels_last)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.labels), self.batch_size):
            stop = start + self.batch_size
            yield self.normalize(self.pixels[start:stop]), self.labels[start:stop]
