"""The fast path (GPU loader, bf16 autocast, channels_last) gives the baseline's loss within bf16 tolerance.

On the CPU: `train_one_epoch` autocasts to bf16 on whatever device the config names, so an unresolved
config with amp and channels_last on exercises the fast step here (resolution turns both off on the CPU).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.conftest import tiny_config
from trainer.config import TrainConfig
from trainer.fake_data import generate
from trainer.gpu_loader import GpuEvalBatches
from trainer.loaders import EvalBatches
from trainer.model import PreActResNet
from trainer.optim import build_optimizer
from trainer.train import train_one_epoch

BF16_REL = 1e-2  # bf16 keeps 8 significant bits: ~0.4% per rounding (measured here: < 0.02%)
FP32_REL = 1e-5  # what reordering fp32 sums (channels_last alone) changes, at most (measured: < 1e-6)

BASELINE = tiny_config(loader="torch", amp=False, channels_last=False)  # fp32, NCHW, DataLoader
FAST = tiny_config(loader="gpu", amp=True, channels_last=True)  # bf16 autocast, NHWC, on-device batches


def _fixed_batch(config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The same 64 generated images through the config's loader (normalised, not augmented)."""
    images, _ = generate(64, 1, seed=4)
    if config.loader == "gpu":
        return next(iter(GpuEvalBatches(images, 64, config)))
    return next(iter(EvalBatches(images, 64)))


def _losses(model: nn.Module, config: TrainConfig, steps: int) -> list[float]:
    """The training loss of each of `steps` SGD steps on the one fixed batch."""
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = build_optimizer(model, config)
    batch = _fixed_batch(config)
    return [train_one_epoch(model, optimizer, [batch], config)[0] for _ in range(steps)]


def test_fast_path_and_baseline_give_the_same_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = PreActResNet(8)
    baseline = _losses(copy.deepcopy(model), BASELINE, steps=3)
    fast = _losses(copy.deepcopy(model), FAST, steps=3)
    assert fast == pytest.approx(baseline, rel=BF16_REL)
    differences = [abs(f - b) / b for f, b in zip(fast, baseline, strict=True)]
    assert max(differences) > FP32_REL, "bf16 autocast was not in effect: the losses match to fp32 precision"
    assert baseline[2] < baseline[0], "the steps were not training steps"


def test_the_fast_inputs_are_the_baseline_inputs_in_nhwc_memory() -> None:
    fast_inputs, fast_labels = _fixed_batch(FAST)
    inputs, labels = _fixed_batch(BASELINE)
    assert fast_inputs.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast_inputs, inputs)
    assert torch.equal(fast_labels, labels)
