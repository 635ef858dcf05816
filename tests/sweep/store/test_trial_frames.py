"""The fast read of stored trials (one SELECT per table) gives exactly what `get_trials` gives."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from sweep.store import storage
from sweep.store.trial_frames import from_frozen, load_trials

DISTRIBUTIONS = {
    "optimizer": CategoricalDistribution(["sgd", "adam", None, True]),
    "lr": FloatDistribution(1e-3, 1.0, log=True),
    "batch_size": IntDistribution(32, 256, step=32),
    "depth": CategoricalDistribution([20, 56]),
}


def _stored_study(tmp_path: Path) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    url = storage.default_url(tmp_path)
    rdb = storage.open_storage(url, create=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    other = optuna.create_study(study_name="other", storage=rdb)  # its trials must not leak in
    other.add_trial(create_trial(value=1.0, params={"lr": 0.5}, distributions={"lr": DISTRIBUTIONS["lr"]}))
    study = optuna.create_study(study_name="mixed", storage=rdb, direction="maximize")
    rows = [
        (
            {"optimizer": "sgd", "lr": 0.1, "batch_size": 64, "depth": 20},
            TrialState.COMPLETE,
            0.9,
            {1: 0.5, 2: 0.9},
        ),
        (
            {"optimizer": None, "lr": 0.01, "batch_size": 256, "depth": 56},
            TrialState.PRUNED,
            None,
            {1: -math.inf},
        ),
        ({"optimizer": True, "batch_size": 32}, TrialState.FAIL, None, {1: math.nan, 3: math.inf}),
        ({"depth": 56, "optimizer": "adam"}, TrialState.COMPLETE, math.inf, {}),
        ({}, TrialState.RUNNING, None, {}),
    ]
    for params, state, value, steps in rows:
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params=params,
                distributions={key: DISTRIBUTIONS[key] for key in params},
                intermediate_values=steps,
                user_attrs={"run_dir": f"/runs/{len(study.trials)}"} if params else {"other": 1},
            )
        )
    return study, rdb


def test_sql_read_equals_get_trials(tmp_path: Path) -> None:
    study, rdb = _stored_study(tmp_path)
    fast = load_trials(study, rdb)
    slow = from_frozen(study.get_trials(deepcopy=False))
    pd.testing.assert_frame_equal(fast.trials, slow.trials)
    pd.testing.assert_frame_equal(fast.params, slow.params)
    pd.testing.assert_frame_equal(fast.steps, slow.steps)
    assert fast.trials["number"].tolist() == [0, 1, 2, 3, 4]
    assert fast.trials["run_dir"].tolist()[:4] == ["/runs/0", "/runs/1", "/runs/2", "/runs/3"]
    assert fast.trials["run_dir"].isna().tolist() == [False] * 4 + [True]
    assert fast.params[fast.params["number"] == 2]["value"].tolist() == [True, 32]
    assert isinstance(fast.params["value"].iloc[2], int)  # batch_size 64 stays an int


def test_other_storages_go_through_get_trials() -> None:
    study = optuna.create_study()
    study.add_trial(create_trial(value=1.0, params={"lr": 0.5}, distributions={"lr": DISTRIBUTIONS["lr"]}))
    stored = load_trials(study, study._storage)  # an in-memory storage: no tables to read
    assert stored.params["value"].tolist() == [0.5]
