"""checkpoint.pt: everything a run needs to continue after its last finished epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from trainer.config import TrainConfig
from trainer.errors import UserError
from trainer.files import atomic_torch_save
from trainer.metrics import EpochMetrics
from trainer.paths import RunPaths

FORMAT_VERSION = 1


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LRScheduler,
    history: list[EpochMetrics],
    config: TrainConfig,
) -> None:
    """Write the state after epoch len(history), atomically (the old checkpoint survives a crash)."""
    state = {
        "format": FORMAT_VERSION,
        "epoch": len(history),
        "best_val_acc": max(record.val_acc for record in history),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "history": [record.to_dict() for record in history],
        "config": config.to_dict(),
    }
    atomic_torch_save(state, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU; load_state_dict later moves tensors to the model's device."""
    try:
        # weights_only: a checkpoint holds tensors, numbers, strings and lists; nothing executes on load.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # Besides OSError, damaged bytes raise whatever the unpickler trips on: EOFError, UnpicklingError,
        # RuntimeError, IndexError from an empty stack (`\x80\x02.`), ...: the same fault for the user.
        raise UserError(
            f"{path}: unreadable checkpoint ({type(err).__name__}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise UserError(
            f"{path}: not a checkpoint of this trainer (format {FORMAT_VERSION}); delete it to start over"
        )
    return state


def checkpoint_config(state: dict[str, Any], path: Path) -> TrainConfig:
    return TrainConfig.from_dict(state["config"], source=f"{path} (config)")


def checkpoint_history(state: dict[str, Any]) -> list[EpochMetrics]:
    return [EpochMetrics.from_dict(record) for record in state["history"]]


def restore(
    state: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: LRScheduler
) -> None:
    """Put model, optimizer, schedule and RNG states back as they were after the checkpointed epoch."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def best_path(run_dir: Path) -> Path:
    """best.pt: the weights of the best validation epoch so far."""
    return RunPaths(run_dir).best


def save_best(path: Path, *, model: nn.Module, epoch: int, val_acc: float) -> None:
    """Write the weights of epoch `epoch`, the best by val_acc so far, atomically."""
    atomic_torch_save(
        {"format": FORMAT_VERSION, "epoch": epoch, "val_acc": val_acc, "model": model.state_dict()}, path
    )


def load_best(path: Path) -> dict[str, Any] | None:
    """best.pt as {epoch, val_acc, model}, on the CPU; None when it is missing or unreadable (the trainer
    then knows no best weights: a run started before best.pt existed, or a file damaged outside it)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a missing file, or damaged bytes: whatever the unpickler trips on
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        return None
    return state
