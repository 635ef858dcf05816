"""CIFAR-10 as uint8 arrays: the `cifar-10-batches-py` reader and writer (`trainer.splits` cuts splits)."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.errors import UserError

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # of the official archive, not of the batch files


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 (N, 32, 32, 3) HWC and labels as int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices])


def find_batches_dir(data_dir: Path) -> Path | None:
    """data_dir/cifar-10-batches-py, or data_dir itself when it holds the batch files."""
    for candidate in (data_dir / BATCHES_DIR, data_dir):
        if all((candidate / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
            return candidate
    return None


def ensure_cifar10(data_dir: Path, *, download: bool) -> Path:
    """The batches directory under data_dir, downloaded first when asked."""
    found = find_batches_dir(data_dir)
    if found is not None:
        return found
    if not download:
        raise UserError(
            f"data dir '{data_dir}' has no {BATCHES_DIR} (data_batch_1..5, test_batch); set download = true, "
            f"point data_dir at a copy, or use dataset = 'fake'"
        )
    _download(data_dir)
    found = find_batches_dir(data_dir)
    if found is None:
        raise UserError(f"download into '{data_dir}' finished but {BATCHES_DIR} is still incomplete")
    return found


def _download(data_dir: Path) -> None:
    """Fetch and unpack the official archive (what torchvision's CIFAR10(download=True) does)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"downloading {CIFAR10_URL} into {data_dir} ...", flush=True)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        try:
            urllib.request.urlretrieve(CIFAR10_URL, archive)
        except OSError as err:
            raise UserError(
                f"could not download CIFAR-10 into '{data_dir}' ({err}); copy {BATCHES_DIR} there by hand"
            ) from None
        digest = hashlib.md5(archive.read_bytes()).hexdigest()
        if digest != CIFAR10_ARCHIVE_MD5:
            raise UserError(f"the downloaded archive has md5 {digest}, not {CIFAR10_ARCHIVE_MD5}; try again")
        with tarfile.open(archive) as tar:
            tar.extractall(data_dir, filter="data")


def read_batches(batches_dir: Path, names: tuple[str, ...]) -> ImageSet:
    """Concatenate the given pickled batches into one ImageSet."""
    images, labels = [], []
    for name in names:
        path = batches_dir / name
        try:
            with open(path, "rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            batch_labels = np.asarray(batch[b"labels"], dtype=np.int64)
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
            raise UserError(f"{path}: not a CIFAR-10 batch file ({type(err).__name__}: {err})") from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch_labels):
            raise UserError(f"{path}: expected N x 3072 image rows and N labels, got {data.shape}")
        # Rows are the R, G and B planes of a 32x32 image one after the other: CHW, made HWC here.
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    return ImageSet(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels))


def write_batches(out_dir: Path, train: ImageSet, test: ImageSet) -> Path:
    """Write train/test ImageSets in the standard cifar-10-batches-py layout; returns that directory."""
    batches_dir = Path(out_dir) / BATCHES_DIR
    batches_dir.mkdir(parents=True, exist_ok=True)
    chunks = np.array_split(np.arange(len(train)), len(TRAIN_FILES))
    for index, (name, rows) in enumerate(zip(TRAIN_FILES, chunks, strict=True), start=1):
        _write_batch(batches_dir / name, train.subset(rows), f"training batch {index} of 5")
    _write_batch(batches_dir / TEST_FILE, test, "testing batch 1 of 1")
    meta = {
        b"label_names": [c.encode() for c in CLASSES],
        b"num_cases_per_batch": len(chunks[0]),
        b"num_vis": 3072,
    }
    with open(batches_dir / "batches.meta", "wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return batches_dir


def _write_batch(path: Path, images: ImageSet, batch_label: str) -> None:
    rows = images.images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {
        b"batch_label": batch_label.encode(),
        b"labels": [int(label) for label in images.labels],
        b"data": np.ascontiguousarray(rows, dtype=np.uint8),
        b"filenames": [f"fake_{i:06d}.png".encode() for i in range(len(images))],
    }
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)
