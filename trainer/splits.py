"""What one run trains, validates and tests on: the data set a config names (CIFAR-10 on disk, or the
generated fake one), with the seeded validation split cut off."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.config import TrainConfig
from trainer.data import TEST_FILE, TRAIN_FILES, ImageSet, ensure_cifar10, read_batches
from trainer.errors import UserError
from trainer.fake_data import generate

FAKE_DATA_SEED = 0  # generated images are the same for every run, like a real data set


@dataclass(frozen=True)
class DataSplits:
    """What one run trains, validates and (when asked) tests on."""

    train: ImageSet
    val: ImageSet
    test: ImageSet | None


def load_splits(config: TrainConfig) -> DataSplits:
    """Read (or generate) the data a resolved config asks for and split off the validation images."""
    test: ImageSet | None
    if config.dataset == "fake":
        full_train, test = generate(config.fake_train_size, config.fake_test_size, seed=FAKE_DATA_SEED)
        source = "the generated fake data set"
    else:
        batches = ensure_cifar10(Path(config.data_dir), download=config.download)
        full_train = read_batches(batches, TRAIN_FILES)
        test = read_batches(batches, (TEST_FILE,)) if config.evaluate_test else None
        source = str(batches)
    assert config.val_size is not None, "resolve the config before loading data"
    train_idx, val_idx = split_indices(
        len(full_train), config.val_size, seed=config.split_seed, source=source
    )
    return DataSplits(
        train=full_train.subset(train_idx),
        val=full_train.subset(val_idx),
        test=test if config.evaluate_test else None,
    )


def split_indices(
    n: int, val_size: int, *, seed: int, source: str = "the data"
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation of range(n) cut into (train, validation) index arrays."""
    if not 0 < val_size < n:
        raise UserError(
            f"val_size {val_size} must be between 1 and {n - 1}: {source} has {n} training images"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])
