"""The training loop: `run(config, run_dir)` trains, checkpoints every epoch, and resumes where it stopped."""

from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from trainer.checkpoint import (
    best_path,
    checkpoint_config,
    checkpoint_history,
    load_best,
    load_checkpoint,
    restore,
    save_best,
    save_checkpoint,
)
from trainer.config import RESUMABLE_CHANGES, TrainConfig
from trainer.data import ImageSet
from trainer.distributed import start as start_ranks
from trainer.distributed import stop as stop_ranks
from trainer.distributed import sum_over_ranks
from trainer.distributed import wrap as wrap_for_ranks
from trainer.errors import UserError
from trainer.files import write_atomic
from trainer.loaders import EpochBatches, EvalBatches, TrainBatches, rank_images
from trainer.manifest import recorded_attempt
from trainer.metrics import EpochMetrics, TrainResult, write_epoch, write_epochs
from trainer.model import PreActResNet, count_parameters
from trainer.optim import build_optimizer, build_schedule
from trainer.paths import RunPaths
from trainer.progress import Progress
from trainer.ranks import SINGLE, Ranks, check_batch_size, ranks_from_env
from trainer.rung_word import RUNG_EPOCHS, RungContract, rung_contract
from trainer.splits import DataSplits, load_splits
from trainer.steps import Batches, evaluate, train_one_epoch
from trainer.stop import STOP_AFTER_EPOCH, stop_after_epoch

TRAINER_DIR = Path(__file__).resolve().parent  # the code a run's manifest records


def run(config: TrainConfig, run_dir: Path, *, progress: bool = True) -> TrainResult:
    """Train `config` in `run_dir`; started again on the same run_dir, continue after the last finished epoch.

    Args:
        config: the run's hyperparameters; 'auto' fields are resolved for this machine.
        run_dir: receives config.json, metrics.jsonl, checkpoint.pt, best.pt (the weights of the best
            validation epoch), result.json (see RunPaths) and manifest.json (trainer.manifest).
        progress: print a header and one line per epoch to stdout.

    With $SWEEP_STOP_AFTER_EPOCH set (trainer.stop) below `config.epochs`, the run pauses after that
    epoch: its checkpoint and metrics line written, no test evaluation and no result.json; the result
    returned is of the epochs done so far (its `epochs` < `config.epochs`). Started again on the same
    run_dir it continues; the LR schedule and everything else follow `config.epochs` throughout.

    With $SWEEP_RUNG_EPOCHS set (trainer.rung_word: an asynchronous pruner's rungs), the run waits
    after each of those epochs, its checkpoint and metrics line written, for the launcher's word: go on,
    or stop (the trial was pruned: the run ends there as a pause does, with no result.json).

    With $WORLD_SIZE > 1 (torchrun's variables, or sweep's for `tasks_per_node`) the process is one rank
    of a data-parallel run (trainer.distributed): `batch_size` is the global batch, every rank reads the
    checkpoint and only rank 0 writes the run dir's files; every rank returns the same result.

    Raises:
        UserError: missing data, a run_dir that holds a run of another config, a bad
            $SWEEP_STOP_AFTER_EPOCH, $SWEEP_RUNG_EPOCHS or $SWEEP_RUNG_WAIT_S, or a batch_size that
            does not split over $WORLD_SIZE ranks.
    """
    paths = RunPaths(Path(run_dir))
    stop = stop_after_epoch()  # a bad value fails before anything is written
    rungs = rung_contract()
    ranks = ranks_from_env()
    check_batch_size(config.batch_size, ranks)
    config = config.resolved(cuda_available=torch.cuda.is_available())
    log = Progress(enabled=progress and ranks.writes)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(paths.checkpoint) if paths.checkpoint.exists() else None
    if state is not None:
        _check_same_run(checkpoint_config(state, paths.checkpoint), config, paths)
    if paths.result.exists() and state is not None and state["epoch"] >= config.epochs:
        log.line(f"{paths.run_dir}: already complete ({config.epochs} epochs); nothing to do")
        return TrainResult.read(paths.result)
    started = start_ranks(ranks, torch.device(config.device))
    try:
        # manifest.json (code, machine, times) and config.json: rank 0's
        record = recorded_attempt(paths.run_dir, program_dir=TRAINER_DIR) if ranks.writes else nullcontext()
        with record:
            if ranks.writes:
                write_atomic(paths.config, config.to_json())
            result = _train(config, paths, state, log, stop=stop, rungs=rungs, ranks=ranks)
    except BaseException:
        stop_ranks(started, cleanly=False)  # no rank waits for one that failed
        raise
    stop_ranks(started, cleanly=True)  # the ranks leave together, rank 0's files written
    return result


def _check_same_run(previous: TrainConfig, config: TrainConfig, paths: RunPaths) -> None:
    changed = [name for name in previous.differences(config) if name not in RESUMABLE_CHANGES]
    if changed:
        detail = ", ".join(
            f"{n}: {getattr(previous, n)!r} there, {getattr(config, n)!r} now" for n in changed
        )
        raise UserError(
            f"{paths.checkpoint} belongs to a run with another config ({detail}); "
            f"use another run dir or delete this one to start over"
        )


def _train(
    config: TrainConfig,
    paths: RunPaths,
    state: dict | None,
    log: Progress,
    *,
    stop: int | None = None,
    rungs: RungContract | None = None,
    ranks: Ranks = SINGLE,
) -> TrainResult:
    """Train the epochs after `state`'s up to `config.epochs`, or up to `stop` (a pause) when it is lower,
    or up to a rung of `rungs` where the launcher's word is stop.

    Every rank runs this; only rank 0 (`ranks.writes`) writes files.
    """
    device = torch.device(config.device)
    configure_backends(device)
    data = load_splits(config)
    torch.manual_seed(config.seed)  # model initialisation
    model = PreActResNet(config.depth).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = build_optimizer(model, config)
    schedule = build_schedule(optimizer, config)
    history: list[EpochMetrics] = []
    if state is not None:
        restore(state, model=model, optimizer=optimizer, schedule=schedule)
        history = checkpoint_history(state)
        if ranks.writes:
            _ensure_best(paths, history, model)
    if ranks.writes:
        # metrics.jsonl may hold a line past the checkpoint, or miss one, if the last run died between
        # the two writes: the checkpoint's history is the truth.
        write_epochs(paths.metrics, [record.to_dict() for record in history])
    parameters = count_parameters(model)
    # Several ranks: training steps through DistributedDataParallel (synchronised batch norm), while
    # evaluation runs the plain model, which shares its weights and batch-norm statistics.
    train_model = wrap_for_ranks(model, ranks, device)
    step_model: nn.Module = torch.compile(train_model) if config.compile else train_model  # type: ignore[assignment]
    eval_model = step_model
    if ranks.distributed:
        eval_model = torch.compile(model) if config.compile else model  # type: ignore[assignment]
    train_batches, val_batches, test_batches = build_batches(data, config, ranks)
    log.start(
        config, parameters=parameters, train=len(data.train), val=len(data.val), done_epochs=len(history)
    )
    # a pause changes only where this loop ends: the schedule and the data order follow config.epochs
    last = config.epochs if stop is None else min(stop, config.epochs)
    pruned = False
    for epoch in range(len(history) + 1, last + 1):
        record = _run_epoch(
            epoch, step_model, eval_model, optimizer, train_batches, val_batches, config, log, ranks
        )
        schedule.step()
        new_best = not history or record.val_acc > max(r.val_acc for r in history)
        if epoch == config.epochs and test_batches is not None:
            record = _with_test(
                record, eval_model, test_batches, paths, config, final_is_best=new_best, ranks=ranks
            )
        history.append(record)
        if ranks.writes:  # rank 0 writes the files
            # Checkpoint first: every line in metrics.jsonl is an epoch a restart will not repeat, and a
            # restart after a crash before best.pt is written writes it from the checkpoint (_ensure_best).
            save_checkpoint(
                paths.checkpoint,
                model=model,
                optimizer=optimizer,
                schedule=schedule,
                history=history,
                config=config,
            )
            if new_best:
                save_best(best_path(paths.run_dir), model=model, epoch=epoch, val_acc=record.val_acc)
            write_epoch(paths.metrics, record.to_dict())
            log.epoch(record, config.epochs)
        if rungs is not None and epoch < last and not _go_on(rungs, paths, epoch, ranks, device):
            pruned = True
            break
    if len(history) < config.epochs:  # paused or pruned: the run is not over, so no result.json (nor test)
        done = f"after epoch {len(history)} of {config.epochs}"
        log.line(
            f"stopped {done} ({RUNG_EPOCHS}): the trial was pruned at this rung"
            if pruned
            else f"paused {done} ({STOP_AFTER_EPOCH}={stop}); run again on {paths.run_dir} to resume"
        )
        return TrainResult.from_history(history, parameters=parameters)
    result = TrainResult.from_history(history, parameters=parameters)
    if ranks.writes:
        write_atomic(paths.result, result.to_json())
    log.done(result, str(paths.run_dir))
    return result


def _go_on(rungs: RungContract, paths: RunPaths, epoch: int, ranks: Ranks, device: torch.device) -> bool:
    """The launcher's word after epoch `epoch` (trainer.rung_word; True for an epoch that is no rung):
    rank 0 waits for it in the run dir, the other ranks for rank 0 (an all-reduce), so that all of them
    go on, or stop, together."""
    if epoch not in rungs.epochs:  # the same on every rank: no all-reduce
        return True
    go = rungs.go_on(paths.run_dir, epoch) if ranks.writes else True
    return sum_over_ranks([0.0 if go else 1.0], ranks, device)[0] == 0.0


def _best_epoch(history: list[EpochMetrics]) -> EpochMetrics:
    """The epoch of the highest val_acc, the first of equals (as TrainResult.best_epoch)."""
    return max(history, key=lambda record: record.val_acc)


def _ensure_best(paths: RunPaths, history: list[EpochMetrics], model: nn.Module) -> None:
    """On resume: when the best epoch is the checkpoint's own and best.pt does not hold it (the last run
    died between the two writes), write it from the restored weights, which are that epoch's."""
    if not history:
        return
    best = _best_epoch(history)
    saved = load_best(best_path(paths.run_dir))
    if best.epoch == history[-1].epoch and (saved is None or saved["epoch"] != best.epoch):
        save_best(best_path(paths.run_dir), model=model, epoch=best.epoch, val_acc=best.val_acc)


def _with_test(
    record: EpochMetrics,
    model: nn.Module,
    test_batches: Batches,
    paths: RunPaths,
    config: TrainConfig,
    *,
    final_is_best: bool,
    ranks: Ranks = SINGLE,
) -> EpochMetrics:
    """The last epoch's record with the test set evaluated once with the final weights and once with the
    best validation epoch's (best.pt, which every rank reads); the test set never chooses an epoch."""
    test_loss, test_acc = evaluate(model, test_batches, config, ranks=ranks)
    best_loss: float | None
    best_acc: float | None
    if final_is_best:  # the same weights: the same numbers
        best_loss, best_acc = test_loss, test_acc
    else:
        best_model = _best_model(paths, config)
        if best_model is None:
            best_loss, best_acc = None, None
        else:
            best_loss, best_acc = evaluate(best_model, test_batches, config, ranks=ranks)
    return dataclasses.replace(
        record,
        test_loss=test_loss,
        test_acc=test_acc,
        test_loss_best_val=best_loss,
        test_acc_best_val=best_acc,
    )


def _best_model(paths: RunPaths, config: TrainConfig) -> nn.Module | None:
    """The model with best.pt's weights; None when the run has none (begun by a trainer without best.pt)."""
    saved = load_best(best_path(paths.run_dir))
    if saved is None:
        return None
    model = PreActResNet(config.depth)
    model.load_state_dict(saved["model"])
    model = model.to(config.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def configure_backends(device: torch.device) -> None:
    """Process-wide settings of the fast step on CUDA."""
    if device.type == "cuda":
        # cuDNN times the convolution algorithms once per input shape and keeps the fastest.
        torch.backends.cudnn.benchmark = True


def build_batches(
    data: DataSplits, config: TrainConfig, ranks: Ranks = SINGLE
) -> tuple[EpochBatches, Batches, Batches | None]:
    """(train, validation, test or None) batches from the loader `config.loader` names; with several
    ranks, this rank's share of each (the training batches: of each global batch)."""
    eval_batch_size = max(256, config.batch_size)  # evaluation holds no activations for backward
    train: EpochBatches
    if config.loader == "gpu":
        from trainer.gpu_loader import GpuEvalBatches, GpuTrainBatches

        train = GpuTrainBatches(data.train, config, ranks)

        def eval_batches(images: ImageSet) -> Batches:
            return GpuEvalBatches(rank_images(images, ranks), eval_batch_size, config)
    else:
        train = TrainBatches(data.train, config, ranks)

        def eval_batches(images: ImageSet) -> Batches:
            return EvalBatches(rank_images(images, ranks), eval_batch_size)

    test = eval_batches(data.test) if data.test is not None else None
    return train, eval_batches(data.val), test


def _run_epoch(
    epoch: int,
    model: nn.Module,
    eval_model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_batches: EpochBatches,
    val_batches: Batches,
    config: TrainConfig,
    log: Progress,
    ranks: Ranks = SINGLE,
) -> EpochMetrics:
    """Train one epoch, evaluate on validation, and time both."""
    start = time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    steps = len(train_batches)
    train_loss, train_acc = train_one_epoch(
        model,
        optimizer,
        train_batches.epoch(epoch),
        config,
        on_step=lambda step: log.step(epoch, step, steps),
        ranks=ranks,
        images=train_batches.images,
    )
    train_seconds = time.perf_counter() - start
    val_loss, val_acc = evaluate(eval_model, val_batches, config, ranks=ranks)
    return EpochMetrics(
        epoch=epoch,
        train_loss=train_loss,
        train_acc=train_acc,
        val_loss=val_loss,
        val_acc=val_acc,
        lr=lr,
        epoch_seconds=time.perf_counter() - start,
        images_per_second=train_batches.images / train_seconds,
    )
