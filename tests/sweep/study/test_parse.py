"""The study-file parser: every mistake is a one-line SweepError naming file and key; shipped studies load."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from sweep.errors import SweepError
from sweep.study import (
    Categorical,
    FloatRange,
    IntRange,
    Resources,
    list_studies,
    load_study,
    parse_study,
)
from sweep.study.files import shipped_dir
from tests.sweep.conftest import ROOT, assert_one_line_error, sweep_main
from trainer.config import TrainConfig

GRID = '[study]\nsampler = "grid"\n'
TPE = '[study]\nsampler = "tpe"\nn_trials = 5\n'
SHIPPED = ["final", "optimizers", "search", "smoke", "tuning"]


def write(tmp_path: Path, text: str, name: str = "study") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


# (id, file text, fragments the message must contain besides the file path)
ERROR_CASES = [
    ("invalid-toml", "[study\n", ["not valid TOML"]),
    ("unknown-section", GRID + "[sapce]\nlr = [0.1]\n", ["[sapce]", "did you mean 'space'"]),
    ("key-outside-section", 'sampler = "grid"\n', ["'sampler'", "outside any section"]),
    ("section-not-table", "train = 3\n" + GRID, ["[train]", "must be a table"]),
    ("unknown-study-key", GRID + "n_trial = 3\n", ["[study] key 'n_trial'", "n_trials"]),
    ("missing-sampler", "[study]\nn_trials = 2\n", ["[study] key 'sampler'", "grid, tpe, random"]),
    ("bad-sampler", '[study]\nsampler = "bayes"\n', ["[study] key 'sampler'", "'bayes'"]),
    ("sampler-not-string", "[study]\nsampler = 1\n", ["[study] key 'sampler'"]),
    ("bad-pruner", GRID + 'pruner = "asha"\n', ["[study] key 'pruner'", "median"]),
    ("bad-direction", GRID + 'direction = "up"\n', ["[study] key 'direction'", "maximize"]),
    ("unknown-metric", GRID + 'metric = "accuracy"\n', ["[study] key 'metric'", "val_acc"]),
    ("test-metric", GRID + 'metric = "test_acc"\n', ["[study] key 'metric'"]),
    ("loss-maximized", GRID + 'metric = "val_loss"\ndirection = "maximize"\n', ["'direction'", "minimize"]),
    ("n-trials-zero", GRID + "n_trials = 0\n", ["[study] key 'n_trials'", ">= 1"]),
    ("n-trials-string", GRID + 'n_trials = "ten"\n', ["[study] key 'n_trials'"]),
    ("n-trials-bool", GRID + "n_trials = true\n", ["[study] key 'n_trials'"]),
    ("repeats-zero", GRID + "n_trials = 1\nrepeats = 0\n", ["[study] key 'repeats'"]),
    ("bad-name", GRID + 'name = "my study"\n', ["[study] key 'name'"]),
    (
        "pruner-setting-without-pruner",
        GRID + "pruner_warmup_epochs = 2\n",
        ["'pruner_warmup_epochs'", "median"],
    ),
    (
        "startup-trials-for-hyperband",
        TPE + 'pruner = "hyperband"\npruner_startup_trials = 2\n[space]\nlr = [0.1, 0.2]\n',
        ["'pruner_startup_trials'", "only applies to the median pruner"],
    ),
    (
        "negative-warmup",
        GRID + 'pruner = "median"\npruner_warmup_epochs = -1\n',
        ["'pruner_warmup_epochs'", ">= 0"],
    ),
    ("train-unknown-field", GRID + "[train]\nlrr = 0.1\n", ["[train] key 'lrr'", "did you mean 'lr'"]),
    ("train-wrong-type", GRID + '[train]\nlr = "fast"\n', ["[train]", "'lr'", "a number"]),
    ("train-bad-value", GRID + '[train]\noptimizer = "sgdd"\n', ["[train]", "sgdd", "sgd_nesterov"]),
    ("train-bad-depth", GRID + "[train]\ndepth = 21\n", ["[train]", "depth 21"]),
    (
        "space-unknown-field",
        GRID + "[space]\nlrr = [0.1]\n",
        ["[space] key 'lrr'", "not a TrainConfig field"],
    ),
    (
        "space-also-fixed",
        GRID + "[train]\nlr = 0.1\n[space]\nlr = [0.1, 0.2]\n",
        ["[space] key 'lr'", "[train]"],
    ),
    ("space-scalar", GRID + "[space]\nlr = 0.1\n", ["[space] key 'lr'", "[train]"]),
    ("categorical-empty", GRID + "[space]\noptimizer = []\n", ["[space] key 'optimizer'", "empty"]),
    ("categorical-bad-choice", GRID + '[space]\noptimizer = ["sgd", "sgdd"]\n', ["optimizer", "sgdd"]),
    ("categorical-wrong-type", GRID + '[space]\nbatch_size = [64, "128"]\n', ["batch_size", "'128'"]),
    (
        "categorical-duplicate",
        GRID + "[space]\nbatch_size = [64, 64]\n",
        ["[space] key 'batch_size'", "twice"],
    ),
    ("range-low-not-below-high", TPE + "[space]\nlr = {low = 0.5, high = 0.1}\n", ["'lr'", "low < high"]),
    (
        "range-log-zero-low",
        TPE + "[space]\nweight_decay = {low = 0, high = 1e-3, log = true}\n",
        ["'weight_decay'", "log"],
    ),
    ("range-missing-high", TPE + "[space]\nlr = {low = 0.1}\n", ["[space] key 'lr'", "high"]),
    ("range-unknown-entry", TPE + "[space]\nlr = {low = 0.1, high = 0.5, lg = true}\n", ["'lr'", "'lg'"]),
    ("range-log-not-bool", TPE + '[space]\nlr = {low = 0.1, high = 0.5, log = "yes"}\n', ["'lr'", "log"]),
    ("range-on-string-field", TPE + "[space]\noptimizer = {low = 1, high = 2}\n", ["'optimizer'", "numeric"]),
    (
        "float-range-int-field",
        TPE + "[space]\nbatch_size = {low = 16.5, high = 64}\n",
        ["'batch_size'", "integer"],
    ),
    ("step-on-float-range", TPE + "[space]\nlr = {low = 0.1, high = 0.5, step = 0.1}\n", ["'lr'", "step"]),
    (
        "step-not-dividing",
        TPE + "[space]\nbatch_size = {low = 32, high = 100, step = 32}\n",
        ["'batch_size'", "multiple of step"],
    ),
    ("step-zero", TPE + "[space]\nbatch_size = {low = 32, high = 128, step = 0}\n", ["'batch_size'", "step"]),
    (
        "log-with-step",
        TPE + "[space]\nepochs = {low = 1, high = 9, log = true, step = 2}\n",
        ["'epochs'", "log"],
    ),
    ("range-end-invalid", TPE + "[space]\nmomentum = {low = -1.0, high = 0.9}\n", ["momentum", "0 or more"]),
    (
        "grid-float-range",
        GRID + "[space]\nlr = {low = 0.01, high = 0.1}\n",
        ["[space] key 'lr'", "float range"],
    ),
    (
        "grid-int-range-no-step",
        GRID + "[space]\nbatch_size = {low = 32, high = 64}\n",
        ["[space] key 'batch_size'", "step"],
    ),
    (
        "grid-invalid-combination",
        GRID + '[space]\noptimizer = ["sgd", "sgd_nesterov"]\nmomentum = [0.0, 0.9]\n',
        ["grid configuration", "needs momentum > 0"],
    ),
    (
        "grid-n-trials-too-many",
        GRID + "n_trials = 3\n[space]\nlr = [0.1, 0.2]\n",
        ["'n_trials'", "2 configurations"],
    ),
    (
        "grid-space-and-points",
        GRID + "[space]\nlr = [0.1, 0.2]\n[[points]]\nlr = 0.3\n",
        ["[study] key 'sampler'", "[[points]]"],
    ),
    ("tpe-without-n-trials", '[study]\nsampler = "tpe"\n[space]\nlr = [0.1, 0.2]\n', ["'n_trials'", "tpe"]),
    ("tpe-points-without-space", TPE + "[[points]]\nlr = 0.3\n", ["[study] key 'sampler'", "grid"]),
    (
        "nothing-to-vary-without-n-trials",
        GRID + "[train]\nepochs = 3\n",
        ["[study] key 'n_trials'", "missing"],
    ),
    ("points-as-table", GRID + "[points]\nlr = 0.1\n", ["[[points]]", "array of tables"]),
    (
        "point-unknown-field",
        GRID + "[[points]]\nlrr = 0.1\n",
        ["[[points]] #1 key 'lrr'", "did you mean 'lr'"],
    ),
    (
        "point-also-fixed",
        GRID + "[train]\nlr = 0.1\n[[points]]\nepochs = 3\n[[points]]\nlr = 0.2\n",
        ["[[points]] #2 key 'lr'", "[train]"],
    ),
    ("point-invalid", GRID + '[[points]]\noptimizer = "sgdd"\n', ["[[points]] #1", "sgdd"]),
    ("point-empty", GRID + "[[points]]\n[[points]]\nlr = 0.1\n", ["[[points]] #1", "empty"]),
    (
        "points-different-keys",
        GRID + "[[points]]\nlr = 0.1\n[[points]]\nepochs = 3\n",
        ["[[points]] #2", "same keys"],
    ),
    (
        "point-duplicate",
        GRID + "[[points]]\nlr = 0.1\n[[points]]\nlr = 0.2\n[[points]]\nlr = 0.1\n",
        ["[[points]] #3", "#1"],
    ),
    (
        "tpe-point-missing-space-key",
        TPE + "[space]\nlr = {low = 0.01, high = 0.5}\nbatch_size = [64, 128]\n[[points]]\nlr = 0.1\n",
        ["[[points]] #1", "batch_size"],
    ),
    (
        "tpe-point-outside-range",
        TPE + "[space]\nlr = {low = 0.01, high = 0.5}\n[[points]]\nlr = 0.9\n",
        ["[[points]] #1 key 'lr'", "outside"],
    ),
    (
        "tpe-point-not-a-choice",
        TPE + "[space]\nbatch_size = [64, 128]\n[[points]]\nbatch_size = 96\n",
        ["[[points]] #1 key 'batch_size'", "outside"],
    ),
    (
        "tpe-fewer-trials-than-points",
        '[study]\nsampler = "tpe"\nn_trials = 1\n[space]\nlr = [0.1, 0.2]\n'
        + "[[points]]\nlr = 0.1\n[[points]]\nlr = 0.2\n",
        ["'n_trials'", "2 [[points]]"],
    ),
    (
        "repeats-with-seed-varied",
        GRID + "repeats = 3\n[space]\nseed = [1, 2]\n",
        ["[study] key 'repeats'", "seed"],
    ),
    (
        "resources-unknown-key",
        GRID + "n_trials = 1\n[resources]\ngpu = 1\n",
        ["[resources] key 'gpu'", "did you mean 'gpus'"],
    ),
    ("resources-negative-gpus", GRID + "n_trials = 1\n[resources]\ngpus = -1\n", ["[resources] key 'gpus'"]),
    (
        "resources-zero-cpus",
        GRID + "n_trials = 1\n[resources]\ncpus = 0\n",
        ["[resources] key 'cpus'", ">= 1"],
    ),
    (
        "resources-mem-string",
        GRID + 'n_trials = 1\n[resources]\nmem_gb = "16G"\n',
        ["[resources] key 'mem_gb'"],
    ),
    (
        "resources-timeout-zero",
        GRID + "n_trials = 1\n[resources]\ntimeout_min = 0\n",
        ["[resources] key 'timeout_min'"],
    ),
    (
        "resources-partition-number",
        GRID + "n_trials = 1\n[resources]\npartition = 3\n",
        ["[resources] key 'partition'"],
    ),
    (
        "resources-array-zero",
        GRID + "n_trials = 1\n[resources]\narray_parallelism = 0\n",
        ["[resources] key 'array_parallelism'"],
    ),
    (
        "resources-zero-nodes",
        GRID + "n_trials = 1\n[resources]\nnodes = 0\n",
        ["[resources] key 'nodes'", ">= 1"],
    ),
    ("resources-nodes-float", GRID + "n_trials = 1\n[resources]\nnodes = 1.5\n", ["[resources] key 'nodes'"]),
    (
        "resources-zero-tasks",
        GRID + "n_trials = 1\n[resources]\ntasks_per_node = 0\n",
        ["[resources] key 'tasks_per_node'", ">= 1"],
    ),
    (
        "resources-tasks-string",
        GRID + 'n_trials = 1\n[resources]\ntasks_per_node = "2"\n',
        ["[resources] key 'tasks_per_node'", "integer"],
    ),
    (
        "slurm-ntasks-per-node",
        GRID + "n_trials = 1\n[resources.slurm]\nntasks_per_node = 2\n",
        ["[resources.slurm] key 'ntasks_per_node'", "tasks_per_node"],
    ),
    (
        "slurm-nested-table",
        GRID + "n_trials = 1\n[resources.slurm.extra]\nx = 1\n",
        ["[resources.slurm] key 'extra'"],
    ),
    (
        "slurm-prefixed-key",
        GRID + 'n_trials = 1\n[resources.slurm]\nslurm_qos = "high"\n',
        ["[resources.slurm] key 'slurm_qos'", "'qos'"],
    ),
    (
        "slurm-duplicates-generic",
        GRID + 'n_trials = 1\n[resources.slurm]\ntime = "04:00:00"\n',
        ["[resources.slurm] key 'time'", "timeout_min"],
    ),
    ("slurm-not-table", GRID + "n_trials = 1\n[resources]\nslurm = 3\n", ["[resources] key 'slurm'"]),
    (
        "cuda-without-gpus",
        GRID + 'n_trials = 1\n[train]\ndevice = "cuda"\n[resources]\ngpus = 0\n',
        ["[resources] key 'gpus'", "cuda"],
    ),
]


@pytest.mark.parametrize(
    ("text", "fragments"), [case[1:] for case in ERROR_CASES], ids=[case[0] for case in ERROR_CASES]
)
def test_mistakes_raise_one_line_errors_naming_file_and_key(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SweepError) as caught:
        load_study(path)
    message = str(caught.value)
    assert message.startswith(f"{path}"), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_nodes_and_tasks_per_node_default_to_one_and_are_read(tmp_path: Path) -> None:
    assert (Resources().nodes, Resources().tasks_per_node, Resources().tasks) == (1, 1, 1)
    plain = load_study(write(tmp_path, GRID + "n_trials = 1\n"))
    assert (plain.resources.nodes, plain.resources.tasks_per_node) == (1, 1)
    assert "nodes" not in plain.resources.to_dict()  # as a file omits them
    spec = load_study(write(tmp_path, GRID + "n_trials = 1\n[resources]\nnodes = 2\ntasks_per_node = 4\n"))
    assert (spec.resources.nodes, spec.resources.tasks_per_node, spec.resources.tasks) == (2, 4, 8)
    assert parse_study(spec.to_dict(), source="again").resources == spec.resources


def test_unknown_study_name_lists_the_available_studies(tmp_path: Path) -> None:
    write(tmp_path, GRID + "n_trials = 1\n", name="alpha")
    write(tmp_path, GRID + "n_trials = 1\n", name="beta")
    with pytest.raises(SweepError, match=r"no study named 'gamma'.*alpha, beta"):
        load_study("gamma", studies_dir=tmp_path)


def test_missing_toml_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="not found"):
        load_study(tmp_path / "absent.toml")


def test_load_by_name_and_by_path_give_the_same_study(tmp_path: Path) -> None:
    path = write(tmp_path, GRID + "[space]\nlr = [0.1, 0.2]\n", name="mine")
    by_name = load_study("mine", studies_dir=tmp_path)
    assert by_name == load_study(str(path))
    assert by_name.name == "mine"  # defaults to the file's stem
    assert list_studies(tmp_path) == ["mine"]


def test_shipped_studies_are_exactly_the_five() -> None:
    assert list_studies() == SHIPPED
    # the shipped folder is package data; in this checkout it is the top-level studies/
    assert (shipped_dir() / "smoke.toml").resolve() == (ROOT / "studies" / "smoke.toml").resolve()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_loads_and_every_planned_trial_is_a_valid_config(name: str) -> None:
    spec = load_study(name)
    assert spec.name == name
    planned = spec.planned_trials()
    if spec.sampler == "grid":
        assert len(planned) == spec.n_trials
    configs = [spec.train_config(params) for params in planned]
    assert len({config.to_json() for config in configs}) == len(configs) or not spec.varied_keys
    assert spec.resources.timeout_min is not None


def test_tuning_study_is_exactly_the_seven_original_points() -> None:
    spec = load_study("tuning")
    expected = [
        (64, 2, 5e-4),
        (128, 4, 5e-4),
        (256, 2, 5e-4),
        (128, 2, 1e-4),
        (128, 4, 1e-4),
        (256, 4, 1e-4),
        (128, 6, 1e-4),
    ]
    keys = ("batch_size", "num_workers", "weight_decay")
    assert spec.sampler == "grid" and not spec.space
    assert spec.n_trials == 7
    assert spec.planned_trials() == [dict(zip(keys, values, strict=True)) for values in expected]
    # the rest (optimizer, lr, momentum, schedule, epochs, model, data) is the optimizers winner's
    assert spec.base == "optimizers" and dict(spec.train) == {}


def test_optimizers_grid_is_the_five_optimizers_with_the_original_settings() -> None:
    spec = load_study("optimizers")
    optimizers = [params["optimizer"] for params in spec.grid()]
    assert optimizers == ["sgd", "sgd_nesterov", "adagrad", "adadelta", "adam"]
    assert spec.n_trials == 5
    config = spec.train_config({"optimizer": "adam"})
    assert (config.lr, config.momentum, config.weight_decay, config.batch_size) == (0.1, 0.9, 5e-4, 128)
    assert (config.epochs, config.num_workers, config.schedule, config.depth) == (50, 4, "constant", 164)


def test_final_study_is_one_hundred_epoch_run_with_test_evaluation() -> None:
    spec = load_study("final")
    assert spec.planned_trials() == [{}]
    # everything else is the tuning winner's (tests/sweep/test_base.py runs the chain)
    assert spec.base == "tuning" and dict(spec.train) == {"epochs": 100, "evaluate_test": True}
    assert spec.resources.timeout_min == 480


def test_search_study_has_log_ranges_and_is_not_a_grid() -> None:
    spec = load_study("search")
    assert (spec.sampler, spec.pruner, spec.n_trials) == ("tpe", "successive_halving", 40)
    assert spec.pruner_warmup_epochs == 2  # rungs at epochs 2, 6, 18 of 50
    assert spec.space["lr"] == FloatRange(0.01, 0.5, log=True)
    assert spec.space["weight_decay"] == FloatRange(1e-5, 1e-3, log=True)
    assert spec.space["batch_size"] == Categorical((64, 128, 256))
    assert spec.planned_trials() == []
    with pytest.raises(SweepError, match="float range"):
        spec.grid()


def test_smoke_study_runs_small_fake_data_configs_on_the_cpu() -> None:
    spec = load_study("smoke")
    assert spec.resources.gpus == 0 and spec.pruner == "none"  # all 4 trials complete
    assert 2 <= spec.n_trials <= 4
    for params in spec.planned_trials():
        config = spec.train_config(params)
        assert (config.dataset, config.device, config.depth, config.epochs) == ("fake", "cpu", 20, 2)
        assert (config.fake_train_size, config.fake_test_size, config.val_size) == (600, 100, 100)
        assert (config.batch_size, config.num_workers) == (64, 0)
        assert config.resolved(cuda_available=False).device == "cpu"


def test_grid_is_the_cartesian_product_in_file_order_last_key_fastest(tmp_path: Path) -> None:
    text = GRID + '[space]\noptimizer = ["sgd", "adam"]\nbatch_size = {low = 32, high = 96, step = 32}\n'
    spec = load_study(write(tmp_path, text))
    assert spec.space["batch_size"] == IntRange(32, 96, step=32)
    assert spec.grid() == [{"optimizer": o, "batch_size": b} for o in ("sgd", "adam") for b in (32, 64, 96)]
    assert spec.n_trials == 6


def test_grid_n_trials_cuts_the_planned_trials_short(tmp_path: Path) -> None:
    spec = load_study(write(tmp_path, GRID + "n_trials = 2\n[space]\nlr = [0.1, 0.2, 0.3]\n"))
    assert spec.planned_trials() == [{"lr": 0.1}, {"lr": 0.2}]


def test_tpe_points_are_planned_before_sampling(tmp_path: Path) -> None:
    text = TPE + "[space]\nlr = {low = 0.01, high = 0.5}\nbatch_size = [64, 128]\n"
    text += "[[points]]\nlr = 0.1\nbatch_size = 128\n"
    spec = load_study(write(tmp_path, text))
    assert spec.space["lr"] == FloatRange(0.01, 0.5)
    assert spec.planned_trials() == [{"lr": 0.1, "batch_size": 128}]


def test_int_literals_in_a_float_field_make_a_float_range(tmp_path: Path) -> None:
    spec = load_study(write(tmp_path, TPE + "[space]\nlr = {low = 1, high = 2}\n"))
    assert spec.space["lr"] == FloatRange(1.0, 2.0)
    assert isinstance(spec.space["lr"], FloatRange)


@pytest.mark.parametrize(
    ("metric", "direction"), [("val_acc", "maximize"), ("val_loss", "minimize"), ("train_loss", "minimize")]
)
def test_direction_defaults_from_the_metric(tmp_path: Path, metric: str, direction: str) -> None:
    spec = load_study(write(tmp_path, GRID + f'n_trials = 1\nmetric = "{metric}"\n'))
    assert spec.direction == direction


def test_train_config_merges_params_and_offsets_the_seed_per_repeat(tmp_path: Path) -> None:
    text = GRID + "repeats = 3\n[train]\nseed = 10\nepochs = 3\n[space]\nlr = [0.1, 0.2]\n"
    spec = load_study(write(tmp_path, text))
    config = spec.train_config({"lr": 0.2}, repeat=2)
    assert (config.lr, config.epochs, config.seed) == (0.2, 3, 12)
    assert spec.train_config({"lr": 0.2}).seed == 10
    with pytest.raises(SweepError, match="repeat 3"):
        spec.train_config({"lr": 0.2}, repeat=3)
    with pytest.raises(SweepError, match="fixed in \\[train\\]"):
        spec.train_config({"epochs": 5})
    with pytest.raises(SweepError, match="sgdd"):
        spec.train_config({"optimizer": "sgdd"})


def test_resources_defaults_and_slurm_passthrough(tmp_path: Path) -> None:
    assert load_study(write(tmp_path, GRID + "n_trials = 1\n")).resources == Resources(gpus=1, cpus=4)
    text = GRID + 'n_trials = 1\n[resources]\nmem_gb = 16\npartition = "gpu"\n'
    text += '[resources.slurm]\nqos = "high"\nexclusive = true\n'
    resources = load_study(write(tmp_path, text)).resources
    assert (resources.mem_gb, resources.partition) == (16.0, "gpu")
    assert resources.slurm_kwargs() == {"slurm_qos": "high", "slurm_exclusive": True}


def test_spec_is_frozen(tmp_path: Path) -> None:
    spec = load_study("smoke")
    with pytest.raises(AttributeError):
        spec.n_trials = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.train["epochs"] = 9  # type: ignore[index]


ROUND_TRIP_EXTRA = (
    GRID
    + 'name = "extra"\nrepeats = 2\n[train]\nepochs = 3\n'
    + "[space]\nbatch_size = {low = 32, high = 96, step = 32}\nlr = [0.1, 1]\n"
    + '[resources]\ncpus = 2\ntimeout_min = 30\narray_parallelism = 4\n[resources.slurm]\nqos = "low"\n'
)


@pytest.mark.parametrize("name", [*SHIPPED, "extra"])
def test_to_dict_round_trips_through_json(tmp_path: Path, name: str) -> None:
    spec = load_study(write(tmp_path, ROUND_TRIP_EXTRA, name="extra") if name == "extra" else name)
    data = json.loads(spec.to_json())
    again = parse_study(data, source="round-trip")
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    assert again.planned_trials() == spec.planned_trials()
    assert data["study"]["n_trials"] == spec.n_trials


def test_from_dict_validates_like_the_file(tmp_path: Path) -> None:
    data = load_study("search").to_dict()
    data["space"]["lr"]["low"] = 0.0
    with pytest.raises(SweepError, match=r"^edited: \[space\] key 'lr'"):
        parse_study(data, source="edited")


@pytest.mark.parametrize("name", SHIPPED)
def test_train_config_of_a_shipped_study_is_a_train_config(name: str) -> None:
    """Its [train] table (read here straight from the file; none in a study whose `base` supplies it at
    launch) and a trial's params over TrainConfig's defaults; each further seed counts the seed up."""
    spec = load_study(name)
    train = tomllib.loads((shipped_dir() / f"{name}.toml").read_text()).get("train", {})
    params = (spec.planned_trials() or [{}])[0]
    config = spec.train_config(params)
    assert isinstance(config, TrainConfig)
    assert config.to_dict() == {**TrainConfig().to_dict(), **train, **params}
    seeded = dataclasses.replace(spec, repeats=3)  # the shipped studies run one seed each
    assert seeded.train_config(params, repeat=2) == config.replace(seed=config.seed + 2)


def test_pruner_settings_reach_the_optuna_pruner(tmp_path: Path) -> None:
    import optuna

    from sweep.study.plan import make_pruner

    text = (
        GRID + 'pruner = "median"\npruner_startup_trials = 2\npruner_warmup_epochs = 3\n[space]\nlr = [0.1]\n'
    )
    spec = load_study(write(tmp_path, text))
    assert (spec.pruner_startup_trials, spec.pruner_warmup_epochs) == (2, 3)
    pruner = make_pruner(spec)
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (2, 3)
    default = make_pruner(load_study(write(tmp_path, GRID + 'pruner = "median"\n[space]\nlr = [0.1]\n', "d")))
    assert (default._n_startup_trials, default._n_warmup_steps) == (5, 0)  # Optuna's own defaults
    hyper = TPE + 'pruner = "hyperband"\npruner_warmup_epochs = 4\n[space]\nlr = [0.1, 0.2]\n'
    assert make_pruner(load_study(write(tmp_path, hyper, "h")))._min_resource == 4


def test_a_study_whose_validation_split_leaves_no_training_images_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GRID + '[train]\ndataset = "fake"\nfake_train_size = 300\nval_size = 300\n[space]\nlr = [0.1]\n',
    )
    with pytest.raises(SweepError, match="val_size 300 must be below fake_train_size 300") as caught:
        load_study(path)
    assert str(caught.value).startswith(str(path))


def test_a_study_file_that_is_not_utf8_is_one_line_naming_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: a study file with a Latin-1 byte (a comment saved by a Windows editor) was a traceback."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# study of lr\n# \xe9tude\n" + (GRID + "[space]\nlr = [0.1]\n").encode())
    with pytest.raises(SweepError) as caught:
        load_study(path)
    assert str(caught.value).startswith(f"{path}: line 2 ")
    result = sweep_main(capsys, "launch", "--study", str(path), "--dry-run")
    assert_one_line_error(result, str(path), "line 2", "must be UTF-8")


HUGE_SPACE = (
    "[space]\n"
    f"lr = {[round(0.001 * (i + 1), 6) for i in range(100)]}\n"
    f"weight_decay = {[round(1e-5 * (i + 1), 8) for i in range(100)]}\n"
    f"momentum = {[round(0.05 * i, 3) for i in range(10)]}\n"
)


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        ('optimizer = ["adam", "sgd", "rmsprop"]\n', ["[space] optimizer = 'rmsprop'", "unknown optimizer"]),
        ("depth = { low = 8, high = 26, step = 3 }\n", ["[space] depth = 17", "depth 17 is neither"]),
        ('optimizer = ["sgd", "sgd_nesterov"]\n', ["grid configuration", "'optimizer': 'sgd_nesterov'",
                                                   "'momentum': 0.0", "needs momentum > 0"]),
    ],
    ids=["categorical", "int-range", "related-fields"],
)  # fmt: skip
def test_one_bad_value_of_a_huge_grid_is_one_line_naming_the_key(
    tmp_path: Path, extra: str, fragments: list[str]
) -> None:
    """Fault: a 10^6-point grid's check made every configuration (minutes of silence); checked per
    dimension instead, a bad value of one dimension must still be refused, naming the key."""
    path = write(tmp_path, GRID + "[train]\ndataset = 'fake'\n" + HUGE_SPACE + extra)
    with pytest.raises(SweepError) as caught:
        load_study(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_a_huge_grid_is_checked_without_a_config_per_combination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault: `sweep launch --dry-run` of a 10^6-point grid was silent for >15 min: TrainConfig.from_dict
    (and its get_type_hints) ran once per configuration. A 10^5-point grid makes one per value."""
    made: list[dict] = []
    from_dict = TrainConfig.from_dict.__func__  # type: ignore[attr-defined]

    def counted(cls: type[TrainConfig], data: dict, **kwargs: object) -> TrainConfig:
        made.append(data)
        return from_dict(cls, data, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(TrainConfig, "from_dict", classmethod(counted))
    path = write(
        tmp_path, GRID + "[train]\ndataset = 'fake'\n" + HUGE_SPACE + 'optimizer = ["sgd", "adam"]\n'
    )
    spec = load_study(path)
    assert spec.n_trials == 100 * 100 * 10 * 2
    # [train], each value once at parse and once in the grid check, optimizer x momentum: about 450
    assert 0 < len(made) < 1000, len(made)
