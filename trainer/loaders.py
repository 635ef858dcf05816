"""Batches for training and evaluation.

`loader = "torch"` is the classic path the original runs used: a DataLoader whose worker processes augment
image by image, so `num_workers` matters. `loader = "gpu"` (trainer/gpu_loader.py) serves the same
interface from tensors on the device; `EpochBatches` is what the training loop needs of either.
The augmentation is torchvision's RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor and Normalize,
written out here: torchvision's PyPI wheels are CUDA builds that cannot be imported beside a CPU-only
torch, and the trainer must run on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trainer.config import TrainConfig
from trainer.data import ImageSet
from trainer.ranks import SINGLE, Ranks

# Per-channel statistics of the CIFAR-10 training set, RGB, on [0, 1] pixel values.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


PAD = 4  # pixels of zero padding around the image before the random 32x32 crop


class EpochBatches(Protocol):
    """Training batches: `epoch(e)` yields (inputs, labels) for epoch e, a function of (seed, e) only."""

    images: int  # training images per epoch

    def __len__(self) -> int: ...  # steps per epoch

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffling and augmentation: a function of (seed, epoch), not of RNG history."""
    return seed * 100_003 + epoch


def images_per_epoch(images: int, batch_size: int, ranks: Ranks) -> int:
    """The training images one epoch uses, all ranks together: all of them, except that with several
    ranks a last batch smaller than the number of ranks is left out (every rank must take part in
    every step, with at least one image)."""
    tail = images % batch_size
    return images - tail if 0 < tail < ranks.world_size else images


def rank_share(batch: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's part of one global batch (of indices, or anything indexed like them): every
    world_size-th from position `rank`, so the ranks' parts together are the whole batch."""
    return batch[ranks.rank :: ranks.world_size] if ranks.distributed else batch


def rank_images(images: ImageSet, ranks: Ranks) -> ImageSet:
    """This rank's share of an evaluation split (every world_size-th image from `rank`)."""
    if not ranks.distributed:
        return images
    return images.subset(np.arange(ranks.rank, len(images), ranks.world_size))


_MEAN = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
_STD = torch.tensor(CIFAR10_STD).view(3, 1, 1)


def augment(image: np.ndarray) -> torch.Tensor:
    """One HWC uint8 image -> random crop of the zero-padded image, flip with p = 0.5, normalised CHW float.

    Draws from torch's global RNG, as torchvision's transforms do, so DataLoader worker seeding applies.
    """
    height, width = image.shape[:2]
    padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
    top, left = torch.randint(0, 2 * PAD + 1, (2,)).tolist()
    crop = padded[top : top + height, left : left + width]
    if torch.rand(()) < 0.5:
        crop = crop[:, ::-1]
    pixels = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float().div_(255)
    return (pixels - _MEAN) / _STD


class AugmentedImages(Dataset[tuple[torch.Tensor, int]]):
    """An ImageSet served one augmented image at a time."""

    def __init__(self, images: ImageSet) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return augment(self.images.images[index]), int(self.images.labels[index])


class TrainBatches:
    """Shuffled, augmented training batches whose order and augmentation depend only on (seed, epoch).

    Deriving each epoch's randomness from the seed and the epoch number, rather than from RNG state
    carried across epochs, is what makes a resumed run identical to an uninterrupted one.

    With several ranks (trainer.distributed) the order of the images is the same on every rank and each
    rank loads its share of each global batch (`RankBatchSampler`); `images` counts all ranks' images.
    """

    def __init__(self, images: ImageSet, config: TrainConfig, ranks: Ranks = SINGLE) -> None:
        self.seed = config.seed
        self.ranks = ranks
        self.images = images_per_epoch(len(images), config.batch_size, ranks)
        self.generator = torch.Generator()
        pin_memory = config.device.startswith("cuda")
        self.sampler: RankBatchSampler | None = None
        if ranks.distributed:
            self.sampler = RankBatchSampler(len(images), config.batch_size, ranks)
            self.loader = DataLoader(
                AugmentedImages(images),
                batch_sampler=self.sampler,
                num_workers=config.num_workers,
                pin_memory=pin_memory,
                generator=self.generator,
            )
        else:
            self.loader = DataLoader(
                AugmentedImages(images),
                batch_size=config.batch_size,
                shuffle=True,
                drop_last=False,
                num_workers=config.num_workers,
                pin_memory=pin_memory,
                generator=self.generator,
            )

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        seed = epoch_seed(self.seed, epoch)
        if self.sampler is not None:
            self.sampler.generator.manual_seed(seed)  # the order: the same on every rank
            seed = seed * 1_009 + self.ranks.rank + 1  # augmentation: each rank its own draws
        self.generator.manual_seed(seed)  # shuffling, and the workers' seeds
        torch.manual_seed(seed)  # augmentation when it runs in this process (num_workers = 0)
        return iter(self.loader)


class RankBatchSampler(Sampler[list[int]]):
    """One rank's indices of each global batch of a shuffled epoch: the epoch's permutation (from
    `generator`, seeded alike on every rank) cut into global batches of `batch_size`, and of each batch
    this rank's share (`rank_share`). Every rank yields the same number of batches."""

    def __init__(self, images: int, batch_size: int, ranks: Ranks) -> None:
        self.total = images
        self.batch_size = batch_size
        self.ranks = ranks
        self.used = images_per_epoch(images, batch_size, ranks)
        self.generator = torch.Generator()

    def __len__(self) -> int:
        return -(-self.used // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.total, generator=self.generator)
        for start in range(0, self.used, self.batch_size):
            yield rank_share(order[start : start + self.batch_size], self.ranks).tolist()


def normalized_tensor(images: ImageSet) -> torch.Tensor:
    """Images as a normalised float32 NCHW tensor, the evaluation input (no augmentation)."""
    pixels = torch.from_numpy(np.ascontiguousarray(images.images)).permute(0, 3, 1, 2).float().div_(255)
    return (pixels - _MEAN) / _STD


class EvalBatches:
    """Fixed-order evaluation batches, normalised once up front."""

    def __init__(self, images: ImageSet, batch_size: int) -> None:
        self.inputs = normalized_tensor(images)
        self.labels = torch.from_numpy(images.labels)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.labels), self.batch_size):
            stop = start + self.batch_size
            yield self.inputs[start:stop], self.labels[start:stop]
