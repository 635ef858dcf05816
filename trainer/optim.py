"""Optimizers and learning-rate schedules by name."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, MultiStepLR

from trainer.config import TrainConfig

MULTISTEP_MILESTONES = (0.5, 0.75)  # fractions of the run at which the lr is multiplied by 0.1


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer a config names; weight decay applies to every parameter, as in the original runs."""
    params = model.parameters()
    # Fused kernels exist for these on CUDA: one launch per step instead of one per parameter tensor.
    on_cuda = config.device.startswith("cuda")
    fused: dict[str, Any] = {"fused": True} if on_cuda else {}
    # Adagrad's fused kernel is CPU-only and Adadelta has none: on CUDA they take the multi-tensor
    # (foreach) path, a few launches per step for all parameters rather than several per parameter.
    foreach: dict[str, Any] = {"foreach": True} if on_cuda else {}
    name, lr, wd = config.optimizer, config.lr, config.weight_decay
    if name in ("sgd", "sgd_nesterov"):
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, weight_decay=wd, nesterov=name == "sgd_nesterov", **fused
        )
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd, **foreach)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=wd, **foreach)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **fused)
    raise AssertionError(f"optimizer {name!r} passed validation but has no builder")


def build_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> LRScheduler:
    """A per-epoch schedule: stepped once after each epoch."""
    if config.schedule == "constant":
        return ConstantLR(optimizer, factor=1.0, total_iters=0)
    if config.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "multistep":
        milestones = sorted({max(1, round(config.epochs * f)) for f in MULTISTEP_MILESTONES})
        return MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    raise AssertionError(f"schedule {config.schedule!r} passed validation but has no builder")
