"""benchmarks/throughput.py runs end to end on the CPU with a tiny model (numbers are not checked)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.throughput import baseline_dataset, main
from trainer.data import ImageSet

TINY = [
    "--depth", "8", "--batch-size", "16", "--fake-train-size", "96", "--device", "cpu", "--num-workers", "0"
]  # fmt: skip


@pytest.mark.slow  # trains both loader paths
def test_throughput_prints_both_paths_and_their_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "--steps", "3", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    for start in ("device: cpu", "baseline:", "augmentation:", "fast:", "baseline ", "fast ", "ratio "):
        assert any(line.lstrip().startswith(start) for line in out.splitlines()), (start, out)
    assert "loader=gpu" in out and "loader=torch" in out
    assert "peak GPU memory" not in out  # CUDA only


@pytest.mark.slow  # trains both loader paths
def test_accuracy_mode_trains_both_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "--accuracy-epochs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if "val acc" in line] == ["baseline", "fast"]


def test_the_baseline_augmentation_gives_normalised_32x32_images() -> None:
    images = ImageSet(np.zeros((4, 32, 32, 3), dtype=np.uint8), np.arange(4))
    dataset, name = baseline_dataset(images)
    image, label = dataset[2]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 2
    assert "torchvision" in name  # which transforms ran, or why torchvision's could not
