"""Data-parallel training when the process is one rank of several ($WORLD_SIZE > 1, torchrun's variables).

Each rank trains on its share of every global batch: the global batch of step k is the same images a
single process would take (`config.batch_size` stays the global batch), and rank r takes every
world_size-th of them starting at r. Gradients are averaged by DistributedDataParallel, scaled so that
the update is the single process's even when the last batch does not split evenly; batch norm is
synchronised (the statistics of the whole global batch), so two ranks compute what one rank computes,
within float rounding. The training and evaluation metrics are sums all-reduced over the ranks:
every rank evaluates its share of the validation (and test) images and every rank ends with the same
numbers, so every rank makes the same decisions (best epoch, when to stop). Only rank 0 writes files.

With $WORLD_SIZE unset or 1 nothing here changes the single-process run.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from trainer.errors import UserError
from trainer.ranks import Ranks


def start(ranks: Ranks, device: torch.device) -> bool:
    """Join the process group (env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) unless this process
    already has; nccl on CUDA, gloo on the CPU. True when this call started it (and `stop` ends it)."""
    if not ranks.distributed or dist.is_initialized():
        return False
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise UserError(f"${name} must be set when $WORLD_SIZE is {ranks.world_size}")
    if device.type == "cuda":
        if device.index is None:  # "cuda": this rank's GPU, the one it sees or LOCAL_RANK's of several
            torch.cuda.set_device(ranks.local_rank % torch.cuda.device_count())
        dist.init_process_group("nccl", init_method="env://", rank=ranks.rank, world_size=ranks.world_size)
    else:
        dist.init_process_group("gloo", init_method="env://", rank=ranks.rank, world_size=ranks.world_size)
    return True


def stop(started: bool, *, cleanly: bool) -> None:
    """Leave the process group `start` joined; `cleanly`: after every rank got here (a barrier), without
    which a rank that leaves first can abort a peer's gloo threads."""
    if not (started and dist.is_initialized()):
        return
    if cleanly:
        dist.barrier()
    dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def sum_over_ranks(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """Each value summed over the ranks (float64), the same list on every rank."""
    if not ranks.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def wrap(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """The model as it steps: synchronised batch norm, in DistributedDataParallel. One rank: itself."""
    if not ranks.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()])
    return DistributedDataParallel(convert_to_gloo_batchnorm(model))


def convert_to_gloo_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with each BatchNorm2d replaced, in place, by a `GlooBatchNorm2d` sharing its parameters and
    buffers (torch's SyncBatchNorm runs on GPUs only). State-dict keys are unchanged."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GlooBatchNorm2d):
            replacement = GlooBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            replacement.weight, replacement.bias = child.weight, child.bias
            replacement.running_mean, replacement.running_var = child.running_mean, child.running_var
            replacement.num_batches_tracked = child.num_batches_tracked
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            convert_to_gloo_batchnorm(child)
    return module


class GlooBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics are those of the whole global batch, on the CPU: per-channel
    sums all-reduced with autograd (`_SumOverRanks`), so the backward pass is exact too. In eval
    mode, or with no process group, it is plain BatchNorm2d."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        x = input.float()
        dims = (0, 2, 3)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype)
        first = _SumOverRanks.apply(torch.cat([x.sum(dim=dims), count]))
        total = first[-1]
        mean = first[:-1] / total
        centred = x - mean.view(1, -1, 1, 1)
        var = _SumOverRanks.apply((centred * centred).sum(dim=dims)) / total
        with torch.no_grad():
            momentum = 0.1 if self.momentum is None else self.momentum
            self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)  # type: ignore[union-attr]
            unbiased = var.detach() * (total / (total - 1).clamp(min=1))
            self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)  # type: ignore[union-attr]
            self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out.to(input.dtype)


class _SumOverRanks(torch.autograd.Function):
    """A tensor summed over the ranks; its gradient, summed over the ranks, flows back to each rank's."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total
