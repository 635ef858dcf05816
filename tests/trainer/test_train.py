from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import deadline, tiny_config, write_fake_cifar
from trainer import TrainConfig, TrainResult, read_metrics, run
from trainer.checkpoint import best_path
from trainer.config import OPTIMIZERS, SCHEDULES
from trainer.errors import UserError
from trainer.loaders import normalized_tensor
from trainer.model import PreActResNet
from trainer.paths import RunPaths
from trainer.splits import load_splits

METRIC_KEYS = {
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "epoch_seconds",
    "images_per_second",
}
CHANCE = 0.10  # ten balanced classes


@pytest.mark.slow
def test_three_epochs_of_depth_20_learn_the_fake_data_and_write_the_documented_files(tmp_path: Path) -> None:
    config = TrainConfig(
        dataset="fake", depth=20, epochs=3, batch_size=64, lr=0.05, schedule="cosine",
        num_workers=0, fake_train_size=1000, val_size=200, device="cpu",
    )  # fmt: skip
    result = run(config, tmp_path / "run", progress=False)

    # Threshold proved: 50% validation accuracy after 3 epochs, five times chance (seeds 0-3 gave 75-90%).
    assert result.final_val_acc >= 5 * CHANCE
    paths = RunPaths(tmp_path / "run")
    saved_config = json.loads(paths.config.read_text())
    assert set(saved_config) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert (saved_config["device"], saved_config["amp"], saved_config["val_size"]) == ("cpu", False, 200)

    lines = [json.loads(line) for line in paths.metrics.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert all(set(line) == METRIC_KEYS for line in lines)  # no test_* keys: the config did not ask
    assert all(0 <= line["val_acc"] <= 1 and 0 <= line["train_acc"] <= 1 for line in lines)
    assert (
        lines[0]["lr"] == pytest.approx(0.05) and lines[2]["lr"] < lines[1]["lr"] < lines[0]["lr"]
    )  # cosine

    checkpoint = torch.load(paths.checkpoint, weights_only=True)
    assert checkpoint["epoch"] == 3 and {"model", "optimizer", "schedule", "rng", "history", "config"} <= set(
        checkpoint
    )

    saved = json.loads(paths.result.read_text())
    assert saved["epochs"] == 3 and saved["parameters"] == 272_282
    assert saved["best_val_acc"] == max(line["val_acc"] for line in lines)
    assert TrainResult.read(paths.result) == result


def test_evaluate_test_adds_test_metrics_to_the_last_epoch_only(tmp_path: Path) -> None:
    result = run(tiny_config(epochs=2, evaluate_test=True), tmp_path, progress=False)
    records = read_metrics(RunPaths(tmp_path).metrics)
    assert records[0].test_acc is None and records[1].test_acc is not None
    lines = [json.loads(line) for line in RunPaths(tmp_path).metrics.read_text().splitlines()]
    assert set(lines[0]) == METRIC_KEYS
    assert set(lines[1]) == METRIC_KEYS | {"test_loss", "test_acc", "test_loss_best_val", "test_acc_best_val"}
    assert result.test_acc == records[1].test_acc
    assert result.test_acc_best_val == records[1].test_acc_best_val


# Forced: depth 8 on 300 fake images at a constant lr 0.05 overshoots in the last of 5 epochs (seed 0 on
# the CPU: validation 92% at epoch 4, 57% at epoch 5); the test checks that it did before relying on it.
OVERSHOOT = {
    "epochs": 5,
    "fake_train_size": 300,
    "fake_test_size": 100,
    "val_size": 60,
    "evaluate_test": True,
}


def _evaluate_by_hand(weights: dict[str, torch.Tensor], config: TrainConfig) -> tuple[float, float]:
    """Test loss and accuracy of `weights`, on the whole test set in one batch, outside the trainer's loop."""
    model = PreActResNet(config.depth)
    model.load_state_dict(weights)
    test = load_splits(config.resolved(cuda_available=False)).test
    assert test is not None
    with torch.no_grad():
        logits = model.eval()(normalized_tensor(test))
    labels = torch.from_numpy(test.labels)
    return F.cross_entropy(logits, labels).item(), (logits.argmax(dim=1) == labels).float().mean().item()


def test_test_set_is_evaluated_with_the_best_validation_epochs_weights_and_the_last(tmp_path: Path) -> None:
    config = tiny_config(**OVERSHOOT)
    result = run(config, tmp_path, progress=False)
    records = read_metrics(RunPaths(tmp_path).metrics)
    assert result.best_epoch < config.epochs, "the run did not overshoot: the forcing needs another config"
    assert all(record.test_acc is None for record in records[:-1])  # no epoch is chosen on the test set

    best = torch.load(best_path(tmp_path), weights_only=True)
    assert (best["epoch"], best["val_acc"]) == (result.best_epoch, result.best_val_acc)
    final = torch.load(RunPaths(tmp_path).checkpoint, weights_only=True)["model"]
    best_loss, best_acc = _evaluate_by_hand(best["model"], config)
    last_loss, last_acc = _evaluate_by_hand(final, config)

    assert result.test_acc_best_val == pytest.approx(best_acc, abs=1e-6)
    assert result.test_loss_best_val == pytest.approx(best_loss, rel=1e-4)
    assert result.test_acc == pytest.approx(last_acc, abs=1e-6)
    assert result.test_loss == pytest.approx(last_loss, rel=1e-4)
    assert result.test_acc_best_val != result.test_acc  # two sets of weights, two numbers
    assert (records[-1].test_acc, records[-1].test_acc_best_val) == (
        result.test_acc,
        result.test_acc_best_val,
    )


def test_a_restart_writes_best_pt_from_the_checkpoint_when_the_last_run_died_before_it(
    tmp_path: Path,
) -> None:
    config = tiny_config(**{**OVERSHOOT, "epochs": 4})  # the overshoot's first 4 epochs: the best is the last
    run(config, tmp_path, progress=False)
    paths = RunPaths(tmp_path)
    best_path(tmp_path).unlink()  # as if killed between writing checkpoint.pt and best.pt
    paths.result.unlink()
    result = run(config, tmp_path, progress=False)

    best = torch.load(best_path(tmp_path), weights_only=True)
    assert best["epoch"] == result.best_epoch == 4
    final = torch.load(paths.checkpoint, weights_only=True)["model"]
    assert all(torch.equal(best["model"][key], final[key]) for key in final)
    assert result.test_acc_best_val == result.test_acc


def test_cifar10_layout_on_disk_trains(
    tmp_path: Path, fake_cifar_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run of dataset cifar10 trains on the batch files in data_dir (300 training images)."""
    config = tiny_config(dataset="cifar10", data_dir=str(fake_cifar_dir), val_size=50)
    result = run(config, tmp_path / "run")
    assert "cifar10: 250 train / 50 val images" in capsys.readouterr().out  # 300 on disk, 50 held out
    assert result.epochs == 1
    # Other images in the same layout train to other numbers: the run learnt from these files
    elsewhere = write_fake_cifar(tmp_path / "other", seed=2)
    other = run(config.replace(data_dir=str(elsewhere)), tmp_path / "other-run", progress=False)
    assert other.epochs == 1 and other.final_train_loss != result.final_train_loss


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_trains_and_moves_the_weights(tmp_path: Path, optimizer: str) -> None:
    run(tiny_config(optimizer=optimizer, lr=0.01), tmp_path, progress=False)
    state = torch.load(RunPaths(tmp_path).checkpoint, weights_only=True)
    torch.manual_seed(0)
    from trainer.model import PreActResNet

    initial = PreActResNet(8).state_dict()["conv1.weight"]
    assert not torch.equal(state["model"]["conv1.weight"], initial)  # the optimizer stepped
    assert state["optimizer"]["state"], "the optimizer kept no state"


@pytest.mark.parametrize(
    ("schedule", "expected_lrs"),
    [
        ("constant", [0.1, 0.1, 0.1, 0.1]),
        ("multistep", [0.1, 0.1, 0.01, 0.001]),  # x0.1 after 50% and 75% of 4 epochs
        ("cosine", [0.1, 0.085355, 0.05, 0.014645]),
    ],
)
def test_each_schedule_sets_the_lr_of_every_epoch(
    tmp_path: Path, schedule: str, expected_lrs: list[float]
) -> None:
    assert schedule in SCHEDULES
    run(
        tiny_config(schedule=schedule, epochs=4, lr=0.1, fake_train_size=64, val_size=16),
        tmp_path,
        progress=False,
    )
    lrs = [record.lr for record in read_metrics(RunPaths(tmp_path).metrics)]
    assert lrs == pytest.approx(expected_lrs, rel=1e-4)


def test_a_finished_run_is_not_trained_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = run(tiny_config(), tmp_path, progress=False)
    mtime = RunPaths(tmp_path).checkpoint.stat().st_mtime_ns
    again = run(tiny_config(), tmp_path)
    assert again == first
    assert RunPaths(tmp_path).checkpoint.stat().st_mtime_ns == mtime
    assert "already complete" in capsys.readouterr().out


def test_a_run_dir_of_another_config_is_refused(tmp_path: Path) -> None:
    run(tiny_config(epochs=2), tmp_path, progress=False)
    with pytest.raises(UserError, match=r"another config \(lr: 0.05 there, 0.2 now\)"):
        run(tiny_config(epochs=2, lr=0.2), tmp_path, progress=False)
    # where the data lives may change between a run and its resumption
    run(tiny_config(epochs=2, data_dir="elsewhere"), tmp_path, progress=False)


def test_progress_prints_a_line_per_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(tiny_config(epochs=2), tmp_path)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("PreAct ResNet-8")
    assert [line.split()[1] for line in out if line.startswith("epoch")] == ["1/2", "2/2"]
    assert out[-1].startswith("done: best val acc")


def test_metrics_reader_skips_a_line_still_being_written(tmp_path: Path) -> None:
    run(tiny_config(epochs=2), tmp_path, progress=False)
    path = RunPaths(tmp_path).metrics
    with open(path, "a") as handle:
        handle.write('{"epoch": 3, "train_lo')  # a poller may read the file mid-append
    assert [record.epoch for record in read_metrics(path)] == [1, 2]


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tmp_path: Path) -> None:
    eager = run(tiny_config(), tmp_path / "eager", progress=False)
    compiled = run(tiny_config(compile=True), tmp_path / "compiled", progress=False)
    assert compiled.final_train_loss == pytest.approx(eager.final_train_loss, rel=1e-3)
    assert compiled.final_val_loss == pytest.approx(eager.final_val_loss, rel=1e-3)


def test_importing_the_data_types_does_not_import_torch() -> None:
    import subprocess
    import sys

    # (`from trainer import run`, which brings torch in, is what the training tests import)
    code = "import sys, trainer, trainer.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=deadline(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
