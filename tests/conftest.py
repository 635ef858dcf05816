"""Shared fixtures: small fake CIFAR-10 on disk and tiny CPU configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.data import write_batches
from trainer.fake_data import generate


def tiny_config(**overrides: object) -> TrainConfig:
    """A config that trains in about a second on a CPU: depth 8, a few hundred generated images."""
    fields: dict[str, object] = dict(
        dataset="fake",
        depth=8,
        epochs=1,
        batch_size=32,
        num_workers=0,
        fake_train_size=160,
        fake_test_size=40,
        val_size=32,
        device="cpu",
        lr=0.05,
    )
    fields.update(overrides)
    return TrainConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def fake_cifar_dir(tmp_path: Path) -> Path:
    """A data dir holding a 300/60-image fake CIFAR-10 in the real cifar-10-batches-py layout."""
    train, test = generate(300, 60, seed=1)
    write_batches(tmp_path / "data", train, test)
    return tmp_path / "data"
