"""A trial whose program hangs after its last epoch is said stalled, once, and `sweep status` shows it."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from sweep.commands.status import render, trial_rows
from sweep.errors import SweepError
from sweep.launcher import launch, stall
from sweep.launcher.intervals import Intervals
from sweep.launcher.stall import EpochClock, StallRule, watch_epochs
from sweep.store import records
from sweep.store.records import TrialRecord
from sweep.store.storage import default_url
from sweep.study import load_study
from tests.sweep.conftest import processes_mentioning

# Three epochs 0.2 s apart, then hangs for 3 s before it exits (a process that does not end).
HANGS = """\
import json, os, time
for epoch in (1, 2, 3):
    time.sleep(0.2)
    with open(os.path.join(os.environ["SWEEP_RUN_DIR"], "metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "val_acc": 0.1 * epoch}) + "\\n")
time.sleep(3)
"""


def test_a_program_that_hangs_after_its_last_epoch_is_said_stalled_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hangs.py").write_text(HANGS)
    study_file = tmp_path / "hang.toml"
    study_file.write_text(
        f'[study]\nname = "hang"\nsampler = "grid"\n[train]\nepochs = 3\n[space]\nlr = [0.1]\n'
        f'[program]\ncommand = ["{sys.executable}", "hangs.py"]\n[resources]\ngpus = 0\ncpus = 1\n'
    )
    results = tmp_path / "results"
    lines: list[str] = []
    quick = Intervals(stall_min_s=1.0)  # 3 x 0.2 s is under it: 1 s it is
    launch(
        load_study(study_file),
        results_dir=results,
        executor="local",
        read_every_s=0.1,
        out=lines.append,
        intervals=quick,
    )
    stalled = [line for line in lines if "stalled" in line]
    assert len(stalled) == 1, lines  # said once, not at every poll
    assert stalled[0].startswith("trial 0 stalled: no new epoch for ")
    assert "after epoch 3 (3x its median " in stalled[0] and "its job still runs" in stalled[0]
    (trial,) = optuna.load_study(study_name="hang", storage=default_url(results)).get_trials()
    assert trial.state == TrialState.COMPLETE  # a stall is said, nothing is stopped
    assert TrialRecord.of(trial).stalled is not None and "after epoch 3" in str(TrialRecord.of(trial).stalled)


def test_status_shows_a_running_trial_stalled_and_not_once_epochs_come_again(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    trial = study.ask()
    records.write(trial, stalled="no new epoch for 14 min after epoch 3 (3x its median 4 min between epochs)")
    (line,) = [line for line in render("s", "val_acc", trial_rows(study)) if line.lstrip().startswith("#0 ")]
    assert line.endswith(
        "stalled: no new epoch for 14 min after epoch 3 (3x its median 4 min between epochs)"
    )
    records.write(trial, stalled="")  # epochs came again
    assert "stalled" not in " ".join(render("s", "val_acc", trial_rows(study)))


# Logs epoch 1, then hangs for a minute at its first start; started again, logs epochs 2 and 3.
HANGS_ONCE = """\
import json, os, time
run_dir = os.environ["SWEEP_RUN_DIR"]
first = not os.path.exists(os.path.join(run_dir, "started"))
open(os.path.join(run_dir, "started"), "a").close()
for epoch in ((1,) if first else (2, 3)):
    time.sleep(0.2)
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "val_acc": 0.1 * epoch}) + "\\n")
if first:
    time.sleep(60)
"""


def _stalling_study(folder: Path, action: str) -> Path:
    (folder / "hangs.py").write_text(HANGS_ONCE)
    path = folder / "stall.toml"
    path.write_text(
        f'[study]\nname = "stall"\nsampler = "grid"\nstall_after_min = 0.03\nstall_action = "{action}"\n'
        f'[train]\nepochs = 3\n[space]\nlr = [0.1]\n[program]\ncommand = ["{sys.executable}", "hangs.py"]\n'
        "[resources]\ngpus = 0\ncpus = 1\n"
    )
    return path


@pytest.mark.parametrize("action", ["requeue", "fail"])
def test_a_stalled_trial_is_submitted_again_or_failed_as_stall_action_says(
    tmp_path: Path, action: str
) -> None:
    results = tmp_path / "results"
    lines: list[str] = []
    spec = load_study(_stalling_study(tmp_path, action))
    assert (spec.stall_after_min, spec.stall_action) == (0.03, action)
    launch(spec, results_dir=results, executor="local", read_every_s=0.1, out=lines.append)
    (trial,) = optuna.load_study(study_name="stall", storage=default_url(results)).get_trials()
    record = TrialRecord.of(trial)
    said = "stalled: no new epoch for "
    if action == "requeue":
        assert trial.state == TrialState.COMPLETE and record.submissions == 2, lines
        (stalled,) = [line for line in lines if said in line]
        assert stalled.startswith("trial 0 stalled: no new epoch for ") and stalled.endswith(
            "after epoch 1 ([study] stall_after_min = 0.03); job stopped, submitting it again"
        )
        assert not record.stalled  # cleared once its job was started again
    else:
        assert trial.state == TrialState.FAIL and record.submissions == 1, lines
        assert any(line.startswith(f"trial 0 failed: {said}") for line in lines), lines
        assert 'after epoch 1 ([study] stall_after_min = 0.03); [study] stall_action = "fail"' in str(
            trial.user_attrs["traceback"]
        )
    assert not processes_mentioning(str(tmp_path / "hangs.py"))  # the hanging program was stopped


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("stall_after_min = 0", "[study] key 'stall_after_min' is 0; give a number of minutes > 0"),
        ('stall_after_min = "5"', "[study] key 'stall_after_min' is '5'; give a number of minutes > 0"),
        ('stall_action = "kill"', "[study] key 'stall_action' is 'kill'; choose one of warn, requeue, fail"),
    ],
)
def test_bad_stall_keys_are_one_line_errors(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'[study]\nname = "s"\nsampler = "grid"\n{line}\n[space]\nlr = [0.1]\n')
    with pytest.raises(SweepError) as err:
        load_study(path)
    assert message in str(err.value) and "\n" not in str(err.value)


# The median rule on its boundary, on the clock `stall` reads (given here): stalled after no new epoch for
# max(3 x the median gap between epochs, 60 s). Epochs come `gaps` apart (the first one `gaps[0]` after
# the submission); then nothing for `idle_s`. The numbers are written out, not computed from STALL_FACTOR
# and MIN_STALL_S, so a factor or minimum moved a little, or `<` turned into `<=`, fails them.
@pytest.mark.parametrize(
    ("gaps", "idle_s", "stalled"),
    [
        # short epochs: 3 x 10 s = 30 s is under the minimum; 60 s decides
        ([10.0] * 4, 30.5, False),
        ([10.0] * 4, 59.5, False),
        ([10.0] * 4, 60.0, True),
        ([10.0] * 4, 60.5, True),
        # 3 x 19.9 s is still under it
        ([19.9] * 4, 59.5, False),
        ([19.9] * 4, 60.5, True),
        # long epochs: 3 x 100 s = 300 s is over the minimum and decides
        ([100.0] * 4, 60.5, False),
        ([100.0] * 4, 299.5, False),
        ([100.0] * 4, 300.0, True),
        ([100.0] * 4, 300.5, True),
        # the median, not the mean (200 s) nor the longest gap (400 s)
        ([100.0, 100.0, 100.0, 400.0], 299.5, False),
        ([100.0, 100.0, 100.0, 400.0], 300.5, True),
    ],
)
def test_a_trial_is_stalled_after_no_epoch_for_3x_its_median_gap_and_at_least_60_s(
    monkeypatch: pytest.MonkeyPatch, gaps: list[float], idle_s: float, stalled: bool
) -> None:
    now = [0.0]
    monkeypatch.setattr(stall, "time", SimpleNamespace(monotonic=lambda: now[0]))
    trial = optuna.create_study().ask()
    clock = EpochClock(last=0.0)  # submitted at 0
    for gap in gaps:
        now[0] += gap
        assert watch_epochs(clock, trial, 1, False, lambda _: None, StallRule(action="fail")) is None
    now[0] += idle_s
    said = watch_epochs(clock, trial, 0, False, lambda _: None, StallRule(action="fail"))
    assert (said is not None) is stalled, (clock.idle_limit(), said)
    assert clock.stalled is stalled
    if stalled:
        assert said is not None and "after epoch 4 (3x its median " in said


@pytest.mark.parametrize(("idle_s", "stalled"), [(119.5, False), (120.0, True), (120.5, True)])
def test_stall_after_min_is_minutes_and_replaces_the_median_rule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, idle_s: float, stalled: bool
) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[study]\nname = "s"\nsampler = "grid"\nstall_after_min = 2\n[space]\nlr = [0.1]\n')
    rule = StallRule.of(load_study(path))
    assert rule == StallRule(120.0, "warn")  # 2 minutes, in seconds
    now = [0.0]
    monkeypatch.setattr(stall, "time", SimpleNamespace(monotonic=lambda: now[0]))
    trial = optuna.create_study().ask()
    clock = EpochClock(last=0.0)
    now[0] = 1000.0  # one slow epoch (no gap yet: the median rule could not apply)
    assert watch_epochs(clock, trial, 1, False, lambda _: None, rule) is None
    now[0] += idle_s
    lines: list[str] = []
    assert watch_epochs(clock, trial, 0, False, lines.append, rule) is None  # "warn": said, not returned
    assert clock.stalled is stalled
    assert len(lines) == int(stalled)
    assert all("after epoch 1 ([study] stall_after_min = 2); its job still runs" in line for line in lines)
