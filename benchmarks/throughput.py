"""Training images/s of the seed-style baseline against the trainer's fast path, in one process.

    python benchmarks/throughput.py --depth 164 --batch-size 128 --steps 200 --data-dir /path/to/data
    python benchmarks/throughput.py --depth 20 --steps 20 --device cpu             # generated data, CPU
    python benchmarks/throughput.py --depth 164 --accuracy-epochs 5 --data-dir DIR  # validation accuracy

(a) baseline, as the original runs trained: fp32, eager, a DataLoader with 4 worker processes applying
    torchvision's RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize to PIL images
    (the trainer's `trainer.loaders.augment`, the same transforms written out, when torchvision cannot be
    imported), plain SGD.
(b) the fast path, as `trainer.run` trains by default on the device: `loader = "gpu"`, bf16 autocast,
    channels_last, fused SGD, cudnn.benchmark, and torch.compile with --compile. On the CPU the trainer
    turns autocast and channels_last off, so there (b) differs from (a) by its loader only.
Both train the same model from the same initial weights with `trainer.train.train_one_epoch`; the first
--warmup steps (worker start-up, cuDNN autotuning, compilation) are not timed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count, islice
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from trainer import run
from trainer.config import TrainConfig
from trainer.data import ImageSet
from trainer.errors import UserError
from trainer.gpu_loader import GpuTrainBatches
from trainer.loaders import CIFAR10_MEAN, CIFAR10_STD, AugmentedImages, EpochBatches
from trainer.model import PreActResNet, count_parameters
from trainer.optim import build_optimizer
from trainer.splits import load_splits
from trainer.train import configure_backends, train_one_epoch

Batch = tuple[torch.Tensor, torch.Tensor]


# -- the baseline's input pipeline -------------------------------------------------------------------------


class TorchvisionImages(Dataset[tuple[torch.Tensor, int]]):
    """An ImageSet as torchvision's CIFAR10 serves it: a PIL image through a Compose of transforms."""

    def __init__(self, images: ImageSet, transform: object) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        image = Image.fromarray(self.images.images[index])
        return self.transform(image), int(self.images.labels[index])  # type: ignore[operator]


def baseline_dataset(images: ImageSet) -> tuple[Dataset[tuple[torch.Tensor, int]], str]:
    """torchvision's transforms when torchvision imports, else the trainer's own; and which one it is."""
    try:
        from torchvision import transforms
    except Exception as err:  # ImportError, or a CUDA build of torchvision beside a CPU torch
        why = f"{type(err).__name__}: {err}".splitlines()[0]
        return AugmentedImages(images), f"trainer.loaders.augment (torchvision not importable: {why})"
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )
    return TorchvisionImages(images, transform), "torchvision.transforms"


class BaselineBatches:
    """The seed's DataLoader: shuffled, per-image augmentation in `num_workers` worker processes."""

    def __init__(self, dataset: Dataset[tuple[torch.Tensor, int]], config: TrainConfig) -> None:
        self.generator = torch.Generator()
        self.seed = config.seed
        self.images = len(dataset)  # type: ignore[arg-type]
        self.loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            num_workers=config.num_workers,
            pin_memory=config.device.startswith("cuda"),
            generator=self.generator,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        self.generator.manual_seed(self.seed * 100_003 + epoch)
        return iter(self.loader)


# -- timing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    images_per_second: float  # median over the rounds
    peak_memory_mib: float | None  # CUDA only: the path's resident tensors plus the peak of its steps


class Counted:
    """Batches from consecutive epochs, counting the images handed out."""

    def __init__(self, batches: EpochBatches) -> None:
        self.stream = (batch for epoch in count(1) for batch in batches.epoch(epoch))
        self.images = 0

    def take(self, steps: int) -> Iterator[Batch]:
        for inputs, labels in islice(self.stream, steps):
            self.images += len(labels)
            yield inputs, labels


@dataclass
class TrainPath:
    """One way to train: a model, its optimizer, an endless batch stream and the config of the step."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    stream: Counted
    config: TrainConfig
    cudnn_benchmark: bool
    resident_bytes: int = 0  # CUDA memory its model, optimizer state and data hold between steps

    def images_per_second(self, steps: int) -> float:
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        self.stream.images = 0
        start = time.perf_counter()
        train_one_epoch(self.model, self.optimizer, self.stream.take(steps), self.config)  # syncs at the end
        return self.stream.images / (time.perf_counter() - start)


def measure(paths: dict[str, TrainPath], *, steps: int, rounds: int) -> dict[str, Measurement]:
    """Each path's median images/s over `rounds` of `steps` steps, the paths taking turns.

    Taking turns spreads a slow spell of a shared machine over both paths rather than one.
    """
    on_cuda = any(path.config.device.startswith("cuda") for path in paths.values())
    rates: dict[str, list[float]] = {name: [] for name in paths}
    transient = dict.fromkeys(paths, 0)
    for _ in range(rounds):
        for name, path in paths.items():
            if on_cuda:
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
            rates[name].append(path.images_per_second(steps))
            if on_cuda:
                transient[name] = max(transient[name], torch.cuda.max_memory_allocated() - before)
    return {
        name: Measurement(
            statistics.median(rates[name]),
            (path.resident_bytes + transient[name]) / 2**20 if on_cuda else None,
        )
        for name, path in paths.items()
    }


def warmed_up(build: Callable[[], TrainPath], warmup: int) -> TrainPath:
    """Build a path and run its first `warmup` steps untimed (worker start, cuDNN autotuning, compiling)."""
    on_cuda = torch.cuda.is_available()
    before = torch.cuda.memory_allocated() if on_cuda else 0
    path = build()
    path.images_per_second(warmup)
    if on_cuda:
        path.resident_bytes = torch.cuda.memory_allocated() - before
    return path


# -- the two paths -----------------------------------------------------------------------------------------


def configs(args: argparse.Namespace) -> tuple[TrainConfig, TrainConfig]:
    """(baseline, fast) resolved configs that differ only in how the step runs."""
    common = TrainConfig(
        dataset="cifar10" if args.data_dir else "fake",
        data_dir=str(args.data_dir or "data"),
        fake_train_size=args.fake_train_size,
        depth=args.depth,
        batch_size=args.batch_size,
        epochs=args.accuracy_epochs or 1,
        seed=args.seed,
        device=args.device,
    )
    baseline = common.replace(
        loader="torch", num_workers=args.num_workers, amp=False, channels_last=False, compile=False
    )
    fast = common.replace(loader="gpu", num_workers=0, amp=True, channels_last=True, compile=args.compile)
    cuda = torch.cuda.is_available()
    return baseline.resolved(cuda_available=cuda), fast.resolved(cuda_available=cuda)


def new_model(config: TrainConfig) -> nn.Module:
    torch.manual_seed(config.seed)  # the same initial weights for both paths
    model = PreActResNet(config.depth).to(config.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def baseline_path(dataset: Dataset[tuple[torch.Tensor, int]], config: TrainConfig) -> TrainPath:
    """The seed's way: per-image transforms in DataLoader workers, fp32, eager, plain SGD."""
    model = new_model(config)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    stream = Counted(BaselineBatches(dataset, config))
    # cudnn.benchmark off: PyTorch's default, which the seed kept
    return TrainPath(model, optimizer, stream, config, cudnn_benchmark=False)


def fast_path(images: ImageSet, config: TrainConfig) -> TrainPath:
    """The trainer's way on this device (what `trainer.run` builds for the config)."""
    configure_backends(torch.device(config.device))
    model = new_model(config)
    optimizer = build_optimizer(model, config)
    step_model: nn.Module = torch.compile(model) if config.compile else model  # type: ignore[assignment]
    stream = Counted(GpuTrainBatches(images, config))
    cudnn = torch.backends.cudnn.benchmark
    return TrainPath(step_model, optimizer, stream, config, cudnn_benchmark=cudnn)


# -- reporting ---------------------------------------------------------------------------------------------


def machine(device: str) -> str:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = _cpu_model() or platform.processor() or "unknown CPU"
    return f"{device} ({name}; {torch.get_num_threads()} torch threads), torch {torch.__version__}"


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def describe(config: TrainConfig) -> str:
    return (
        f"loader={config.loader}, amp={config.amp}, channels_last={config.channels_last}, "
        f"compile={config.compile}"
    )


def throughput(args: argparse.Namespace) -> None:
    baseline_config, fast_config = configs(args)
    train = load_splits(baseline_config).train
    parameters = count_parameters(PreActResNet(args.depth))
    print(f"device: {machine(fast_config.device)}")
    print(
        f"model: PreAct ResNet-{args.depth} ({parameters:,} parameters), batch {args.batch_size}, "
        f"median of {args.rounds} rounds x {args.steps} timed steps after {args.warmup} warm-up steps, "
        f"data: {baseline_config.dataset} ({len(train):,} training images)"
    )
    dataset, augmentation = baseline_dataset(train)
    paths = {
        "baseline": warmed_up(lambda: baseline_path(dataset, baseline_config), args.warmup),
        "fast": warmed_up(lambda: fast_path(train, fast_config), args.warmup),
    }
    print(f"baseline: {describe(baseline_config)}, num_workers={baseline_config.num_workers}, plain SGD")
    print(f"          augmentation: {augmentation}")
    fused, cudnn = fast_config.device.startswith("cuda"), paths["fast"].cudnn_benchmark
    print(f"fast:     {describe(fast_config)}, fused SGD={fused}, cudnn.benchmark={cudnn}")
    results = measure(paths, steps=args.steps, rounds=args.rounds)
    baseline, fast = results["baseline"], results["fast"]
    print(f"baseline  {baseline.images_per_second:10.1f} images/s")
    print(f"fast      {fast.images_per_second:10.1f} images/s")
    print(f"ratio     {fast.images_per_second / baseline.images_per_second:10.2f}x (fast / baseline)")
    if baseline.peak_memory_mib is not None and fast.peak_memory_mib is not None:
        memory = f"baseline {baseline.peak_memory_mib:,.0f} MiB, fast {fast.peak_memory_mib:,.0f} MiB"
        print(f"peak GPU memory: {memory}")


def accuracy(args: argparse.Namespace) -> None:
    """Train both paths for --accuracy-epochs with `trainer.run` and the same seed; compare val accuracy."""
    baseline_config, fast_config = configs(args)
    print(f"device: {machine(fast_config.device)}")
    print("baseline trains through trainer.run with loader=torch (trainer.loaders.augment, torchvision's")
    print("transforms written out), fp32, eager; fast with the settings below.")
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        for name, config in (("baseline", baseline_config), ("fast", fast_config)):
            print(f"{name}: {describe(config)}, num_workers={config.num_workers}", flush=True)
            result = run(config, Path(tmp) / name, progress=args.progress)
            print(
                f"{name:9} val acc {100 * result.final_val_acc:6.2f}% after {result.epochs} epochs "
                f"(best {100 * result.best_val_acc:.2f}%), {result.train_seconds:.1f} s",
                flush=True,
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/throughput.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--depth", type=int, default=164, help="PreAct ResNet depth (default 164)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100, help="timed training steps per round")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per path, taking turns")
    parser.add_argument("--data-dir", type=Path, help="holds cifar-10-batches-py; default: generated data")
    parser.add_argument("--fake-train-size", type=int, default=10_000, help="images made without --data-dir")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--num-workers", type=int, default=4, help="the baseline's DataLoader workers")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path's model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--accuracy-epochs", type=int, default=0, metavar="N",
        help="instead of timing steps, train both paths N epochs and print validation accuracy",
    )  # fmt: skip
    parser.add_argument("--progress", action="store_true", help="epoch lines in --accuracy-epochs mode")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        accuracy(args) if args.accuracy_epochs else throughput(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
