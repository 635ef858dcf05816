"""The GPU loader's augmentation, checked on the CPU device (the same code runs on CUDA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from trainer import run
from trainer.data import ImageSet
from trainer.gpu_loader import GpuEvalBatches, GpuTrainBatches
from trainer.loaders import CIFAR10_MEAN, CIFAR10_STD, PAD, EvalBatches

MEAN = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
MARKER = (10, 5)  # row, column of the one white pixel of the marker images
GREY = 128  # background of the marker images, so the zero padding is told apart from the image


def _batches(images: np.ndarray, labels: np.ndarray | None = None, **config: object) -> GpuTrainBatches:
    labels = np.arange(len(images)) % 10 if labels is None else labels
    fields: dict[str, object] = {"loader": "gpu", "channels_last": False, "batch_size": 16} | config
    return GpuTrainBatches(ImageSet(images, labels), tiny_config(**fields))


def _pixels(inputs: torch.Tensor) -> torch.Tensor:
    """Normalised inputs back to 0..255 pixel values."""
    return ((inputs * STD + MEAN) * 255).round()


def _marker_images(n: int) -> np.ndarray:
    images = np.full((n, 32, 32, 3), GREY, dtype=np.uint8)
    images[:, MARKER[0], MARKER[1]] = 255
    return images


def _augmented_markers(n: int = 2000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One epoch over n marker images: (row shifts, column shifts, flipped) of each, and black pixels."""
    inputs = torch.cat([x for x, _ in _batches(_marker_images(n), batch_size=500).epoch(1)])
    red = _pixels(inputs)[:, 0]  # (n, 32, 32)
    flat = (red == 255).flatten(1)
    assert (flat.sum(dim=1) == 1).all(), "a 4-pixel shift never crops the marker out"
    where = flat.float().argmax(dim=1)
    rows, cols = where // 32, where % 32
    flipped = cols > 15  # a flip moves column 5 to 26, far beyond any crop shift
    cols = torch.where(flipped, 31 - cols, cols)
    zeros = (red == 0).flatten(1).sum(dim=1)
    return rows - MARKER[0], cols - MARKER[1], torch.stack([flipped.float(), zeros.float()])


def test_batches_have_the_documented_shapes_dtypes_and_memory_format() -> None:
    images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    batches = _batches(images)
    out = list(batches.epoch(1))
    assert len(batches) == 4 and batches.images == 50
    assert [len(labels) for _, labels in out] == [16, 16, 16, 2]
    for inputs, labels in out:
        assert inputs.shape == (len(labels), 3, 32, 32) and inputs.dtype == torch.float32
        assert labels.dtype == torch.int64 and inputs.device.type == labels.device.type == "cpu"
        assert inputs.is_contiguous()
    inputs, _ = next(iter(_batches(images, channels_last=True).epoch(1)))
    assert inputs.is_contiguous(memory_format=torch.channels_last)


def test_values_stay_within_the_normalised_range_and_reach_its_ends() -> None:
    images = np.random.default_rng(1).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    inputs = torch.cat([x for x, _ in _batches(images).epoch(1)])
    low, high = (0 - MEAN) / STD, (1 - MEAN) / STD  # pixel values 0 and 255
    per_channel_min = inputs.amin(dim=(0, 2, 3)).view(1, 3, 1, 1)
    per_channel_max = inputs.amax(dim=(0, 2, 3)).view(1, 3, 1, 1)
    torch.testing.assert_close(per_channel_min, low)
    torch.testing.assert_close(per_channel_max, high)


def test_eval_batches_are_the_baselines_normalisation_unaugmented_in_order() -> None:
    images = np.random.default_rng(2).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    image_set = ImageSet(images, np.arange(50) % 10)
    ours = list(GpuEvalBatches(image_set, 16, tiny_config(channels_last=False)))
    theirs = list(EvalBatches(image_set, 16))
    assert [len(labels) for _, labels in ours] == [16, 16, 16, 2]
    for (x, y), (ref_x, ref_y) in zip(ours, theirs, strict=True):
        torch.testing.assert_close(x, ref_x)
        assert torch.equal(y, ref_y)


def test_crops_shift_by_every_offset_of_the_padding_and_pad_with_zeros() -> None:
    row_shifts, col_shifts, (_, zeros) = _augmented_markers()
    assert row_shifts.abs().max() <= PAD and col_shifts.abs().max() <= PAD
    for shifts in (row_shifts, col_shifts):  # uniform over -4..4: about 222 of 2000 each
        counts = torch.bincount(shifts + PAD, minlength=2 * PAD + 1)
        assert len(counts) == 2 * PAD + 1
        assert (counts - 2000 / 9).abs().max() < 70, counts  # ~5 standard deviations
    # The black padding covers exactly what the shift moved out of the 32x32 window.
    expected = 32 * 32 - (32 - row_shifts.abs()) * (32 - col_shifts.abs())
    assert torch.equal(zeros.long(), expected)
    assert (zeros > 0).float().mean() > 0.7  # only a (0, 0) shift leaves no padding: 1 in 81


def test_flips_happen_half_the_time_independently_of_the_crop() -> None:
    row_shifts, _, (flipped, _) = _augmented_markers()
    assert abs(flipped.mean().item() - 0.5) < 0.045  # 2000 draws: 4 standard deviations
    for shift in (-PAD, 0, PAD):  # ~222 images per shift: still about half flipped
        assert abs(flipped[row_shifts == shift].mean().item() - 0.5) < 0.15


def test_labels_stay_with_their_images_and_each_image_comes_once_per_epoch() -> None:
    # image i is filled with the value i and labelled i % 10: pixel and label can be checked together
    n = 200
    images = np.repeat(np.arange(n, dtype=np.uint8), 32 * 32 * 3).reshape(n, 32, 32, 3)
    labels = np.arange(n) % 10
    values = []
    for inputs, batch_labels in _batches(images, labels, batch_size=32).epoch(3):
        centre = _pixels(inputs)[:, 0, 16, 16].long()  # away from any padding
        assert torch.equal(centre % 10, batch_labels)
        values.append(centre)
    order = torch.cat(values)
    assert sorted(order.tolist()) == list(range(n))
    assert order.tolist() != list(range(n)), "the epoch is shuffled"


def test_each_epoch_is_a_function_of_seed_and_epoch_only() -> None:
    images = np.random.default_rng(3).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)

    def epoch(seed: int, number: int) -> list[torch.Tensor]:
        return [x for x, _ in _batches(images, seed=seed).epoch(number)]

    first = epoch(0, 2)
    torch.manual_seed(123)  # unrelated RNG use in between must not matter
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(0, 2), strict=True))
    loader = _batches(images)  # nor epochs drawn before on the same loader
    list(loader.epoch(1))
    assert all(torch.equal(a, b) for a, b in zip(first, [x for x, _ in loader.epoch(2)], strict=True))
    assert not torch.equal(first[0], epoch(0, 3)[0])
    assert not torch.equal(first[0], epoch(1, 2)[0])


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_batches_live_on_the_configured_device(device: str) -> None:
    images = np.zeros((20, 32, 32, 3), dtype=np.uint8)
    inputs, labels = next(iter(_batches(images, device=device).epoch(1)))
    assert inputs.device.type == labels.device.type == device


@pytest.mark.slow
def test_a_run_with_the_gpu_loader_on_the_cpu_learns_like_the_torch_loader(tmp_path: Path) -> None:
    fields = dict(epochs=3, fake_train_size=320, val_size=80, seed=0)
    torch_result = run(tiny_config(loader="torch", **fields), tmp_path / "torch", progress=False)
    gpu_result = run(tiny_config(loader="gpu", **fields), tmp_path / "gpu", progress=False)
    assert '"loader": "gpu"' in (tmp_path / "gpu" / "config.json").read_text()
    # Seeds 0-3 gave 40-75% (torch) and 52-86% (gpu) validation accuracy; chance is 10%.
    assert torch_result.final_val_acc >= 0.3 and gpu_result.final_val_acc >= 0.3
    assert abs(gpu_result.final_train_loss - torch_result.final_train_loss) < 0.3  # seeds 0-3: < 0.15


def test_a_run_with_the_gpu_loader_resumes_with_the_numbers_of_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainer.train

    config = tiny_config(loader="gpu", epochs=2)
    reference = run(config, tmp_path / "reference", progress=False)
    run_epoch = trainer.train._run_epoch

    def dies_in_epoch_2(epoch: int, *args: object, **kwargs: object) -> object:
        if epoch == 2:
            raise KeyboardInterrupt  # as a kill would, after epoch 1's checkpoint
        return run_epoch(epoch, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(trainer.train, "_run_epoch", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(trainer.train, "_run_epoch", run_epoch)
    resumed = run(config, tmp_path / "resumed", progress=False)
    timings = {"train_seconds"}
    assert {k: v for k, v in vars(resumed).items() if k not in timings} == {
        k: v for k, v in vars(reference).items() if k not in timings
    }
