"""Data-parallel training (trainer/distributed.py): two ranks on the CPU (gloo) compute what one rank
computes with the same global batch, and only rank 0 writes the run dir."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import deadline, tiny_config
from trainer import run
from trainer.config import TrainConfig
from trainer.data import ImageSet
from trainer.errors import UserError
from trainer.gpu_loader import GpuTrainBatches
from trainer.loaders import RankBatchSampler, TrainBatches, images_per_epoch, rank_images
from trainer.metrics import read_epochs
from trainer.paths import RunPaths
from trainer.ranks import Ranks, check_batch_size, is_other_rank, ranks_from_env
from trainer.stop import STOP_AFTER_EPOCH

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_ranks(config: TrainConfig, run_dir: Path, world_size: int, **env: str) -> list[str]:
    """`python -m trainer` as `world_size` ranks on this machine (torchrun's variables); their stderr."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir.parent / f"{run_dir.name}.config.json"
    config_file.write_text(config.to_json())
    port = str(_free_port())
    procs = []
    for rank in range(world_size):
        rank_env = os.environ | env
        rank_env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world_size),
            LOCAL_WORLD_SIZE=str(world_size),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            OMP_NUM_THREADS="1",
        )
        command = [sys.executable, "-m", "trainer", "--config", str(config_file), "--run-dir", str(run_dir)]
        procs.append(
            subprocess.Popen([*command, "--quiet"], cwd=REPO, env=rank_env, stderr=subprocess.PIPE, text=True)
        )
    errors = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=deadline(120))
        errors.append(stderr)
        assert proc.returncode == 0, stderr
    return errors


def _epochs(run_dir: Path) -> list[dict]:
    return read_epochs(RunPaths(run_dir).metrics)


COMPARED = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def _assert_same_numbers(one: dict, two: dict) -> None:
    for key in COMPARED:
        if key in one or key in two:
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key


@pytest.mark.slow
def test_two_ranks_train_as_one_rank_with_the_same_global_batch_and_resume_from_rank_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The GPU-resident loader on the CPU: every rank draws the same epoch (order, crops, flips), so
    # the two ranks' global batches are one rank's, augmentation included. 160 - 32 = 128 training
    # images in global batches of 48: the last, of 32, splits evenly; val (32) and test (40) too.
    config = tiny_config(loader="gpu", epochs=2, batch_size=48, evaluate_test=True)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    run(config, tmp_path / "one", progress=False)

    # two ranks, paused after epoch 1 and started again: both read rank 0's checkpoint
    _run_ranks(config, tmp_path / "two", 2, **{STOP_AFTER_EPOCH: "1"})
    paused = _epochs(tmp_path / "two")
    assert len(paused) == 1 and not RunPaths(tmp_path / "two").result.exists()
    _run_ranks(config, tmp_path / "two", 2)

    one, two = _epochs(tmp_path / "one"), _epochs(tmp_path / "two")
    assert [r["epoch"] for r in two] == [1, 2]  # one line per epoch: only rank 0 writes
    for a, b in zip(one, two, strict=True):
        _assert_same_numbers(a, b)
    assert two[1]["test_acc"] == pytest.approx(one[1]["test_acc"])
    result = json.loads(RunPaths(tmp_path / "two").result.read_text())
    assert result["epochs"] == 2
    manifest = json.loads(RunPaths(tmp_path / "two").manifest.read_text())
    assert len(manifest["attempts"]) == 2  # rank 0's two starts; the other rank writes none


@pytest.mark.slow
def test_two_ranks_with_the_dataloader_path_train_and_write_once(tmp_path: Path) -> None:
    # Each rank augments its own images with its own draws, so the numbers differ a little from one
    # rank's; the order of the images is the same, and so is the validation.
    config = tiny_config(loader="torch", batch_size=40)
    _run_ranks(config, tmp_path / "two", 2)
    (record,) = _epochs(tmp_path / "two")
    assert 0 < record["train_loss"] < 10 and 0 <= record["val_acc"] <= 1
    assert RunPaths(tmp_path / "two").result.exists()


def test_a_batch_size_that_does_not_split_over_the_ranks_is_one_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"batch_size 33 does not split over 2 ranks"):
        check_batch_size(33, Ranks(rank=0, world_size=2))
    config_file = tmp_path / "config.json"
    config_file.write_text(tiny_config(batch_size=33).to_json())
    env = os.environ | {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    command = [sys.executable, "-m", "trainer", "--config", str(config_file), "--quiet"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=deadline(60))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "error: batch_size 33 does not split over 2 ranks ($WORLD_SIZE); batch_size is the global "
        "batch: use a multiple of 2"
    ]
    assert not (tmp_path / "checkpoint.pt").exists()


def test_ranks_come_from_torchruns_variables() -> None:
    assert ranks_from_env({}) == Ranks()
    assert ranks_from_env({"WORLD_SIZE": "1", "RANK": "0"}) == Ranks()
    assert ranks_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == Ranks(3, 4, 1)
    with pytest.raises(UserError, match="RANK 4 is outside 0..3"):
        ranks_from_env({"WORLD_SIZE": "4", "RANK": "4"})
    with pytest.raises(UserError, match="WORLD_SIZE must be a whole number"):
        ranks_from_env({"WORLD_SIZE": "two"})
    assert [is_other_rank({"RANK": text}) for text in ("", "0", " 0 ", "1", "7", "x")] == [
        False, False, False, True, True, False
    ]  # fmt: skip
    assert not is_other_rank({})


@pytest.mark.parametrize(
    ("images", "batch", "world", "used"),
    [
        (100, 32, 2, 100),
        (99, 32, 2, 99),
        (97, 32, 2, 96),
        (98, 32, 4, 96),
    ],  # a tail below the ranks: left out
)
def test_each_global_batch_is_one_ranks_batch_split_over_the_ranks(
    images: int, batch: int, world: int, used: int
) -> None:
    assert images_per_epoch(images, batch, Ranks(0, world)) == used
    generator = torch.Generator().manual_seed(7)
    order = torch.randperm(images, generator=generator).tolist()
    single = [order[start : start + batch] for start in range(0, used, batch)]
    shares = []
    for rank in range(world):
        sampler = RankBatchSampler(images, batch, Ranks(rank, world))
        sampler.generator.manual_seed(7)
        shares.append(list(sampler))
        assert len(sampler) == len(single)
    for step, whole in enumerate(single):
        parts = [share[step] for share in shares]
        assert all(parts), "every rank has images in every step"
        assert sorted(sum(parts, [])) == sorted(whole)


def test_the_gpu_loaders_shares_make_up_the_single_ranks_batches() -> None:
    rng = np.random.default_rng(0)
    images = ImageSet(rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8), np.arange(50) % 10)
    config = tiny_config(loader="gpu", channels_last=False, batch_size=16)
    single = list(GpuTrainBatches(images, config).epoch(3))
    shares = [list(GpuTrainBatches(images, config, Ranks(rank, 2)).epoch(3)) for rank in range(2)]
    assert len(shares[0]) == len(shares[1]) == len(single) == 4
    for step, (inputs, labels) in enumerate(single):
        (x0, y0), (x1, y1) = shares[0][step], shares[1][step]
        torch.testing.assert_close(inputs[0::2], x0)
        torch.testing.assert_close(inputs[1::2], x1)
        assert torch.equal(labels[0::2], y0) and torch.equal(labels[1::2], y1)


def test_the_dataloader_path_of_one_rank_is_unchanged_and_ranks_see_disjoint_images() -> None:
    rng = np.random.default_rng(0)
    images = ImageSet(rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), np.arange(40) % 10)
    config = tiny_config(batch_size=8)
    assert len(TrainBatches(images, config)) == 5
    shares = [TrainBatches(images, config, Ranks(rank, 2)) for rank in range(2)]
    assert [len(s) for s in shares] == [5, 5] and shares[0].images == 40
    sizes = [[len(labels) for _, labels in share.epoch(1)] for share in shares]
    assert sizes == [[4] * 5, [4] * 5]
    val = rank_images(images, Ranks(1, 2))
    assert len(val) == 20 and np.array_equal(val.labels, images.labels[1::2])
