from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from trainer import data as data_module
from trainer.config import TrainConfig
from trainer.data import (
    BATCHES_DIR,
    TEST_FILE,
    TRAIN_FILES,
    ensure_cifar10,
    find_batches_dir,
    read_batches,
)
from trainer.errors import UserError
from trainer.fake_data import generate
from trainer.fake_data import main as fake_data_main
from trainer.splits import load_splits, split_indices


def test_fake_data_cli_does_not_replace_a_data_set_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fake_data_main([str(tmp_path), "--train", "10", "--test", "5"]) == 0
    before = (tmp_path / BATCHES_DIR / "test_batch").read_bytes()
    assert fake_data_main([str(tmp_path), "--train", "20", "--test", "5", "--seed", "3"]) == 2
    assert "exists (real CIFAR-10?)" in capsys.readouterr().err
    assert (tmp_path / BATCHES_DIR / "test_batch").read_bytes() == before
    assert fake_data_main([str(tmp_path), "--train", "20", "--test", "5", "--seed", "3", "--force"]) == 0


def test_fake_data_cli_writes_the_standard_layout(tmp_path: Path) -> None:
    assert fake_data_main([str(tmp_path), "--train", "250", "--test", "50"]) == 0
    batches = tmp_path / BATCHES_DIR
    assert sorted(p.name for p in batches.iterdir()) == sorted([*TRAIN_FILES, TEST_FILE, "batches.meta"])
    with open(batches / "data_batch_1", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    # the official format: bytes keys, N x 3072 uint8 rows (R, G, B planes), a list of int labels
    assert set(raw) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert raw[b"data"].shape == (50, 3072) and raw[b"data"].dtype == np.uint8
    assert isinstance(raw[b"labels"], list) and len(raw[b"labels"]) == 50


def test_reader_returns_exactly_what_was_written(tmp_path: Path) -> None:
    train, test = generate(120, 30, seed=3)
    data_module.write_batches(tmp_path, train, test)
    read_train = read_batches(tmp_path / BATCHES_DIR, TRAIN_FILES)
    read_test = read_batches(tmp_path / BATCHES_DIR, (TEST_FILE,))
    np.testing.assert_array_equal(read_train.images, train.images)
    np.testing.assert_array_equal(read_train.labels, train.labels)
    np.testing.assert_array_equal(read_test.images, test.images)
    assert read_train.images.shape == (120, 32, 32, 3)


def test_data_dir_may_be_the_parent_or_the_batches_dir(fake_cifar_dir: Path) -> None:
    assert find_batches_dir(fake_cifar_dir) == fake_cifar_dir / BATCHES_DIR
    assert find_batches_dir(fake_cifar_dir / BATCHES_DIR) == fake_cifar_dir / BATCHES_DIR
    assert find_batches_dir(fake_cifar_dir.parent) is None


def test_missing_data_dir_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"data dir '{tmp_path / 'nope'}' has no cifar-10-batches-py"):
        ensure_cifar10(tmp_path / "nope", download=False)


def test_corrupt_batch_file_names_the_file(fake_cifar_dir: Path) -> None:
    (fake_cifar_dir / BATCHES_DIR / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="data_batch_3: not a CIFAR-10 batch file"):
        read_batches(fake_cifar_dir / BATCHES_DIR, TRAIN_FILES)


def test_download_is_skipped_when_data_is_present(
    fake_cifar_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object) -> None:
        raise AssertionError("the network was used although the data is present")

    monkeypatch.setattr(data_module.urllib.request, "urlretrieve", no_network)
    assert ensure_cifar10(fake_cifar_dir, download=True) == fake_cifar_dir / BATCHES_DIR


def test_failed_download_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object) -> None:  # stands in for a machine without internet
        raise OSError("Name or service not known")

    monkeypatch.setattr(data_module.urllib.request, "urlretrieve", offline)
    with pytest.raises(UserError, match="could not download CIFAR-10 .*Name or service not known"):
        ensure_cifar10(tmp_path / "data", download=True)


def test_split_is_seeded_disjoint_and_complete() -> None:
    train, val = split_indices(1000, 100, seed=0)
    assert len(train) == 900 and len(val) == 100
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(1000))
    again_train, again_val = split_indices(1000, 100, seed=0)
    np.testing.assert_array_equal(val, again_val)
    _, other_val = split_indices(1000, 100, seed=1)
    assert set(other_val) != set(val)


def test_val_size_must_leave_training_images() -> None:
    with pytest.raises(UserError, match="val_size 300 must be between 1 and 299"):
        split_indices(300, 300, seed=0)


def test_default_split_of_the_full_training_set_is_45000_5000() -> None:
    train, val = split_indices(50_000, TrainConfig().resolved(cuda_available=False).val_size or 0, seed=0)
    assert (len(train), len(val)) == (45_000, 5_000)


def test_load_splits_from_files_and_test_only_when_asked(fake_cifar_dir: Path) -> None:
    config = TrainConfig(data_dir=str(fake_cifar_dir), val_size=50).resolved(cuda_available=False)
    splits = load_splits(config)
    assert (len(splits.train), len(splits.val), splits.test) == (250, 50, None)
    with_test = load_splits(config.replace(evaluate_test=True))
    assert with_test.test is not None and len(with_test.test) == 60
    # without evaluate_test the test batch is never opened: a broken one goes unnoticed
    (fake_cifar_dir / BATCHES_DIR / TEST_FILE).write_bytes(b"")
    assert load_splits(config).test is None
    with pytest.raises(UserError, match="test_batch: not a CIFAR-10 batch file"):
        load_splits(config.replace(evaluate_test=True))


def test_fake_classes_are_balanced_and_learnable() -> None:
    train, test = generate(1000, 500, seed=0)
    assert np.bincount(train.labels).tolist() == [100] * 10
    # A nearest-centroid rule on mean colour alone beats chance (10%) by far: the classes carry signal.
    centroids = np.stack([train.images[train.labels == c].mean(axis=(0, 1, 2)) for c in range(10)])
    colours = test.images.mean(axis=(1, 2))
    predicted = np.argmin(((colours[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == test.labels).mean() > 0.5
    # seeded: the same call gives the same images, another seed other images
    np.testing.assert_array_equal(generate(50, 10, seed=0)[0].images, generate(50, 10, seed=0)[0].images)
    assert not np.array_equal(generate(50, 10, seed=0)[0].images, generate(50, 10, seed=1)[0].images)
