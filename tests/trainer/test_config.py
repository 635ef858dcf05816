from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from trainer.config import OPTIMIZERS, TrainConfig
from trainer.errors import UserError


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"schedule": "linear"}, "unknown schedule 'linear'"),
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"batch_size": 0}, "batch_size must be positive, got 0"),
        ({"batch_size": -8}, "batch_size must be positive"),
        ({"epochs": 0}, "epochs must be positive"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"num_workers": -1}, "num_workers must be 0 or more"),
        ({"weight_decay": -1e-4}, "weight_decay must be 0 or more"),
        ({"optimizer": "sgd_nesterov", "momentum": 0.0}, "'sgd_nesterov' needs momentum > 0"),
        ({"depth": 30}, "depth 30 is neither 6n+2 nor 9n+2"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"val_size": 0}, "val_size must be positive"),
        ({"loader": "dali"}, "unknown loader 'dali'"),
    ],
)
def test_invalid_values_raise_one_error_naming_the_field(fields: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("+", r"\+")):
        TrainConfig(**fields)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"optimiser": "sgd"}, "x.json: unknown key 'optimiser'"),
        ({"lr": "0.1"}, "x.json: key 'lr' must be a number, got '0.1'"),
        ({"epochs": 2.5}, "x.json: key 'epochs' must be an integer"),
        ({"batch_size": True}, "x.json: key 'batch_size' must be an integer"),
        ({"download": "yes"}, "x.json: key 'download' must be true or false"),
        ({"val_size": "all"}, "x.json: key 'val_size' must be an integer or null"),
        ({"optimizer": "lamb"}, "x.json: unknown optimizer 'lamb'"),
    ],
)
def test_from_dict_names_the_source_and_key(data: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        TrainConfig.from_dict(data, source="x.json")


def test_json_round_trip_and_int_for_float(tmp_path: Path) -> None:
    config = TrainConfig(optimizer="adam", lr=3e-4, val_size=100, evaluate_test=True)
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    assert TrainConfig.from_json_file(path) == config
    assert TrainConfig.from_dict({"lr": 1}).lr == 1  # JSON and TOML write 1 for 1.0


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file not found"):
        TrainConfig.from_json_file(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{lr: 0.1")
    with pytest.raises(UserError, match="bad.json: not valid JSON"):
        TrainConfig.from_json_file(tmp_path / "bad.json")


def test_resolution_on_a_cpu_machine() -> None:
    resolved = TrainConfig().resolved(cuda_available=False)
    assert (resolved.device, resolved.amp, resolved.channels_last, resolved.val_size) == (
        "cpu",
        False,
        False,
        5000,
    )
    fake = TrainConfig(dataset="fake", fake_train_size=700).resolved(cuda_available=False)
    assert fake.val_size == 70
    on_gpu = TrainConfig().resolved(cuda_available=True)
    assert (on_gpu.device, on_gpu.amp, on_gpu.channels_last) == ("cuda", True, True)
    with pytest.raises(UserError, match="CUDA is not available"):
        TrainConfig(device="cuda").resolved(cuda_available=False)


def test_the_loader_resolves_to_gpu_on_cuda_and_torch_elsewhere() -> None:
    assert TrainConfig().loader == "auto"
    assert TrainConfig().resolved(cuda_available=False).loader == "torch"
    assert TrainConfig().resolved(cuda_available=True).loader == "gpu"
    assert TrainConfig(device="cpu").resolved(cuda_available=True).loader == "torch"
    assert TrainConfig(loader="gpu").resolved(cuda_available=False).loader == "gpu"  # same code on the CPU
    assert TrainConfig(loader="torch").resolved(cuda_available=True).loader == "torch"


def test_every_documented_optimizer_is_accepted() -> None:
    assert set(OPTIMIZERS) == {"sgd", "sgd_nesterov", "adagrad", "adadelta", "adam", "adamw"}
    for name in OPTIMIZERS:
        assert TrainConfig(optimizer=name).optimizer == name


def test_a_validation_split_larger_than_the_training_set_is_refused_at_once() -> None:
    with pytest.raises(UserError, match="val_size 300 must be below fake_train_size 300"):
        TrainConfig(dataset="fake", fake_train_size=300, val_size=300)
    with pytest.raises(UserError, match="below CIFAR-10's 50,000 training images"):
        TrainConfig(dataset="cifar10", val_size=50_000)
    assert TrainConfig(dataset="fake", fake_train_size=300, val_size=299).val_size == 299


def _fields_read_together() -> list[set[str]]:
    """The fields each `check(...)` of `_validate` reads in its condition, for checks reading two or more."""
    import ast
    import inspect

    from trainer import config

    groups = []
    for node in ast.walk(ast.parse(inspect.getsource(config._validate))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "check":
            condition = node.args[0]
            read = {
                sub.attr
                for sub in ast.walk(condition)
                if isinstance(sub, ast.Attribute)
                and isinstance(sub.value, ast.Name)
                and sub.value.id == "config"
            }
            if len(read) > 1:
                groups.append(read)
    return groups


def test_related_fields_hold_every_check_that_reads_several_fields() -> None:
    """Fault: a grid is checked per dimension plus within RELATED_FIELDS (not per combination); a check
    across fields missing from RELATED_FIELDS would let an invalid combination through."""
    from trainer.config import RELATED_FIELDS

    together = _fields_read_together()
    assert together  # the walk finds the checks at all
    for read in together:
        assert any(read <= group for group in RELATED_FIELDS), f"{sorted(read)} is in no RELATED_FIELDS group"
    for first, second in itertools.combinations(RELATED_FIELDS, 2):
        assert not first & second  # groups that share a field must be one group


def test_field_types_are_worked_out_once() -> None:
    from trainer.config import field_types

    assert field_types() is field_types()
    assert field_types()["val_size"] == int | None
