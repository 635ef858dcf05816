"""One pass of training and one of evaluation: the steps the training loop (trainer.train) runs each
epoch, on one rank or as one of several (trainer.distributed: sums all-reduced, every rank the same)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import TrainConfig
from trainer.distributed import sum_over_ranks
from trainer.errors import UserError
from trainer.ranks import SINGLE, Ranks

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def _autocast(config: TrainConfig) -> AbstractContextManager:
    device_type = torch.device(config.device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=config.amp)


def _to_device(inputs: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    return inputs.to(config.device, non_blocking=True, memory_format=memory_format)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Batches,
    config: TrainConfig,
    *,
    on_step: Callable[[int], None] | None = None,
    ranks: Ranks = SINGLE,
    images: int | None = None,
) -> tuple[float, float]:
    """One pass over `batches`; returns (mean loss, accuracy) on them (all ranks' together).

    Loss and correct counts stay on the device and are read once at the end: no host sync per step.
    With several ranks `batches` are this rank's shares of global batches of `config.batch_size` out of
    `images` per epoch (all ranks'): each rank's loss is its share of the global batch's mean, times the
    number of ranks, so DistributedDataParallel's average of the gradients is the global batch's.
    """
    model.train()
    loss_sum = torch.zeros((), device=config.device)
    correct = torch.zeros((), device=config.device, dtype=torch.long)
    seen = 0
    if ranks.distributed and images is None:
        raise ValueError("train_one_epoch with several ranks needs the epoch's images (all ranks')")
    for step, (inputs, labels) in enumerate(batches, start=1):
        inputs, labels = _to_device(inputs, config), labels.to(config.device, non_blocking=True)
        with _autocast(config):
            logits = model(inputs)
            if ranks.distributed:
                assert images is not None
                global_batch = min(config.batch_size, images - (step - 1) * config.batch_size)
                loss = F.cross_entropy(logits, labels, reduction="sum") * (ranks.world_size / global_batch)
            else:
                loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ranks.distributed:
            loss_sum += F.cross_entropy(logits.detach().float(), labels, reduction="sum")
        else:
            loss_sum += loss.detach().float() * len(labels)
        correct += (logits.argmax(dim=1) == labels).sum()
        seen += len(labels)
        if on_step is not None:
            on_step(step)
    if not ranks.distributed:
        if seen == 0:
            raise UserError("the training split is empty; lower val_size")
        return (loss_sum / seen).item(), (correct.float() / seen).item()
    loss_total, correct_total, seen_total = _summed(loss_sum, correct, seen, ranks, config)
    if seen_total == 0:
        raise UserError("the training split is empty; lower val_size")
    return loss_total / seen_total, correct_total / seen_total


def _summed(
    loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, ranks: Ranks, config: TrainConfig
) -> tuple[float, float, float]:
    """(loss sum, correct, seen) summed over the ranks, as Python numbers."""
    total, right, count = sum_over_ranks(
        [loss_sum.item(), float(correct.item()), float(seen)], ranks, torch.device(config.device)
    )
    return total, right, count


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Batches, config: TrainConfig, *, ranks: Ranks = SINGLE
) -> tuple[float, float]:
    """(mean loss, accuracy) of the model in eval mode over `batches`; with several ranks, over every
    rank's `batches` (each its share of the split): the sums are all-reduced, every rank gets the same."""
    model.eval()
    loss_sum = torch.zeros((), device=config.device)
    correct = torch.zeros((), device=config.device, dtype=torch.long)
    seen = 0
    for inputs, labels in batches:
        inputs, labels = _to_device(inputs, config), labels.to(config.device, non_blocking=True)
        with _autocast(config):
            logits = model(inputs)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        correct += (logits.argmax(dim=1) == labels).sum()
        seen += len(labels)
    if not ranks.distributed:
        return (loss_sum / seen).item(), (correct.float() / seen).item()
    loss_total, correct_total, seen_total = _summed(loss_sum, correct, seen, ranks, config)
    return loss_total / seen_total, correct_total / seen_total
