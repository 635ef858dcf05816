"""TrainConfig: every hyperparameter of one training run, as plain data that serialises to JSON."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import UserError

DATASETS = ("cifar10", "fake")
CIFAR10_TRAIN_IMAGES = 50_000
OPTIMIZERS = ("sgd", "sgd_nesterov", "adagrad", "adadelta", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "multistep")
LOADERS = ("torch", "gpu")
CIFAR10_VAL_SIZE = 5000  # images held out of the 50,000 training images for validation

# The fields whose valid values depend on one another: each group holds the fields read together by
# a check of `_validate` (joined when checks share a field). Every other field is valid or not on its
# own, so a study checks each field's values once and combines only the values within a group, not
# its whole grid. tests/trainer/test_config.py checks this against `_validate`.
RELATED_FIELDS: tuple[frozenset[str], ...] = (
    frozenset({"optimizer", "momentum"}),
    frozenset({"dataset", "val_size", "fake_train_size"}),
)

# Fields that may change when a run is resumed: where the data lives and how it is fed,
# none of which changes the numbers the run computes.
RESUMABLE_CHANGES = frozenset({"data_dir", "download", "num_workers", "compile"})


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Study files and `python -m trainer` flags use these same names."""

    dataset: str = "cifar10"  # cifar10 | fake (generated, learnable, needs no files)
    data_dir: str = "data"  # holds cifar-10-batches-py (or is it)
    download: bool = False  # fetch the official archive when data_dir lacks it
    depth: int = 164  # 6n+2 up to 110: basic blocks; other 9n+2: bottleneck blocks (164: ~1.7M params)
    optimizer: str = "sgd"  # one of OPTIMIZERS
    lr: float = 0.1  # initial learning rate
    momentum: float = 0.9  # SGD momentum; unused by adaptive optimizers
    weight_decay: float = 5e-4  # L2 penalty, applied by the optimizer at every step
    schedule: str = "constant"  # constant | cosine | multistep (x0.1 at 50% and 75% of epochs)
    epochs: int = 50  # passes over the training split
    batch_size: int = 128  # images per step
    num_workers: int = 4  # DataLoader worker processes
    val_size: int | None = None  # held-out training images; None: 5,000 (cifar10) or 10% (fake)
    split_seed: int = 0  # the validation split; fixed by default so trials compare on the same images
    evaluate_test: bool = False  # evaluate the 10,000 test images after the last epoch
    seed: int = 0  # model init, shuffling and augmentation
    # auto: gpu on CUDA, else torch. torch: DataLoader, per-image augmentation in worker processes;
    # gpu: the split as uint8 on the device, whole batches augmented there (trainer/gpu_loader.py)
    loader: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA; always off on the CPU
    channels_last: bool = True  # NHWC memory format on CUDA; always off on the CPU
    compile: bool = False  # torch.compile the model
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    fake_train_size: int = 1000  # training images generated when dataset = "fake"
    fake_test_size: int = 200  # test images generated when dataset = "fake"

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build a config from parsed JSON/TOML, naming `source` and the key in any error."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected a table of TrainConfig fields, got {type(data).__name__}")
        hints = field_types()
        for key, value in data.items():
            if key not in hints:
                raise UserError(f"{source}: unknown key '{key}'; known keys: {', '.join(hints)}")
            if not _is_instance(value, hints[key]):
                raise UserError(f"{source}: key '{key}' must be {_type_name(hints[key])}, got {value!r}")
        try:
            return cls(**data)
        except UserError as err:
            raise UserError(f"{source}: {err}") from None

    @classmethod
    def from_json_file(cls, path: Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def resolved(self, *, cuda_available: bool) -> TrainConfig:
        """The config with every 'auto' and default decided for this machine (what config.json holds)."""
        device = self.device
        if device == "auto":
            device = "cuda" if cuda_available else "cpu"
        on_cuda = device.startswith("cuda")
        if on_cuda and not cuda_available:
            raise UserError(f"device '{device}' was asked for but CUDA is not available; use device = 'cpu'")
        val_size = self.val_size
        if val_size is None:
            val_size = CIFAR10_VAL_SIZE if self.dataset == "cifar10" else max(1, self.fake_train_size // 10)
        loader = self.loader
        if loader == "auto":
            loader = "gpu" if on_cuda else "torch"
        return self.replace(
            device=device,
            loader=loader,
            amp=self.amp and on_cuda,
            channels_last=self.channels_last and on_cuda,
            val_size=val_size,
        )

    def differences(self, other: TrainConfig) -> list[str]:
        """Names of the fields whose values differ between two configs."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]


@functools.cache
def field_types() -> Mapping[str, Any]:
    """TrainConfig field name -> its type (e.g. int, float, int | None)."""
    # get_type_hints evaluates every annotation string anew (~50 us): cached, a config costs far less
    return types.MappingProxyType(typing.get_type_hints(TrainConfig))


@functools.cache
def field_docs() -> dict[str, str]:
    """Each field's comment in the class above (the line's, or the comment lines just before it): what
    `python -m trainer --help` says of its flag."""
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(TrainConfig).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("# "))
            continue
        match = re.match(r"(\w+): [^=]+= .*?(?:#\s*(.*))?$", stripped)
        if match and match.group(1) in field_names():
            text = match.group(2) or " ".join(pending)
            docs[match.group(1)] = text.replace("one of OPTIMIZERS", " | ".join(OPTIMIZERS))
        pending = []
    return docs


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _is_instance(value: Any, hint: Any) -> bool:
    if isinstance(hint, types.UnionType):
        return any(_is_instance(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:  # JSON and TOML write 1 for 1.0
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if isinstance(hint, types.UnionType):
        return " or ".join(_type_name(arm) for arm in typing.get_args(hint))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, "null" if hint is type(None) else str(hint)
    )


def _validate(config: TrainConfig) -> None:
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise UserError(message)

    check(
        config.dataset in DATASETS, f"unknown dataset '{config.dataset}'; choose one of {', '.join(DATASETS)}"
    )
    check(
        config.optimizer in OPTIMIZERS,
        f"unknown optimizer '{config.optimizer}'; choose one of {', '.join(OPTIMIZERS)}",
    )
    check(
        config.schedule in SCHEDULES,
        f"unknown schedule '{config.schedule}'; choose one of {', '.join(SCHEDULES)}",
    )
    check(
        config.loader == "auto" or config.loader in LOADERS,
        f"unknown loader '{config.loader}'; choose auto or one of {', '.join(LOADERS)}",
    )
    check(
        block_kind(config.depth) is not None,
        f"depth {config.depth} is neither 6n+2 nor 9n+2 (e.g. 20, 56, 164)",
    )
    check(config.batch_size > 0, f"batch_size must be positive, got {config.batch_size}")
    check(config.epochs > 0, f"epochs must be positive, got {config.epochs}")
    check(config.num_workers >= 0, f"num_workers must be 0 or more, got {config.num_workers}")
    check(config.lr > 0, f"lr must be positive, got {config.lr}")
    check(config.momentum >= 0, f"momentum must be 0 or more, got {config.momentum}")
    check(config.weight_decay >= 0, f"weight_decay must be 0 or more, got {config.weight_decay}")
    check(
        config.optimizer != "sgd_nesterov" or config.momentum > 0,
        "optimizer 'sgd_nesterov' needs momentum > 0",
    )
    check(config.val_size is None or config.val_size > 0, f"val_size must be positive, got {config.val_size}")
    check(config.fake_train_size > 1, f"fake_train_size must be at least 2, got {config.fake_train_size}")
    # the split needs a training image left over: found here, not by every trial of a study at run time
    check(
        config.dataset != "fake" or config.val_size is None or config.val_size < config.fake_train_size,
        f"val_size {config.val_size} must be below fake_train_size {config.fake_train_size} (the generated "
        "training images); lower val_size or raise fake_train_size",
    )
    check(
        config.dataset != "cifar10" or config.val_size is None or config.val_size < CIFAR10_TRAIN_IMAGES,
        f"val_size {config.val_size} must be below CIFAR-10's {CIFAR10_TRAIN_IMAGES:,} training images",
    )
    check(config.fake_test_size > 0, f"fake_test_size must be positive, got {config.fake_test_size}")
    check(
        config.device == "auto" or config.device == "cpu" or config.device.startswith("cuda"),
        f"unknown device '{config.device}'; use auto, cpu, cuda or cuda:N",
    )


def block_kind(depth: int) -> str | None:
    """'basic' or 'bottleneck' for a valid pre-activation ResNet depth, None otherwise.

    Depths that fit both forms follow the paper: basic blocks up to 110 (20, 56, 110), bottleneck beyond
    (164, 1001). Small 9n+2 depths that are not 6n+2 (11, 29) are bottleneck nets, handy in tests.
    """
    if depth >= 8 and (depth - 2) % 6 == 0 and depth <= 110:
        return "basic"
    if depth >= 11 and (depth - 2) % 9 == 0:
        return "bottleneck"
    return None
