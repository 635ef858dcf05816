"""A user's own training program, which knows sweep only by its contract, run as a study end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.executors.program import ProgramFailed, ProgramJob
from sweep.store.storage import default_url
from sweep.study.spec import Program
from tests.conftest import deadline
from tests.sweep.conftest import ROOT, assert_one_line_error, run_sweep, sweep_cmd, sweep_main
from trainer.metrics import read_epochs

# Imports nothing of sweep: reads SWEEP_PARAMS, writes metrics.jsonl and a checkpoint in SWEEP_RUN_DIR.
TRAIN_PY = """\
import json, os, pathlib, sys
params = json.loads(pathlib.Path(os.environ["SWEEP_PARAMS"]).read_text())
run = pathlib.Path(os.environ["SWEEP_RUN_DIR"])
lr = float(sys.argv[sys.argv.index("--lr") + 1])
checkpoint = run / "checkpoint.json"
start = json.loads(checkpoint.read_text())["epoch"] if checkpoint.exists() else 0
env = os.environ
print("restart", env["SWEEP_RESTART"], "trial", env["SWEEP_TRIAL"], "study", env["SWEEP_STUDY"])
for epoch in range(start + 1, params["epochs"] + 1):
    line = {"epoch": epoch, "score": round(lr * epoch, 6), "loss": round(1 / (epoch * lr * 10), 6)}
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(line) + "\\n")
    checkpoint.write_text(json.dumps({"epoch": epoch}))
"""
CALLABLE_PY = """\
import json
def train(params, run_dir):
    for epoch in range(1, params["epochs"] + 1):
        lr = params["lr"]
        line = {"epoch": epoch, "score": round(lr * epoch, 6), "loss": round(1 / (epoch * lr * 10), 6)}
        with open(run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\\n")
"""
# By hand from the script: score is best (last) at epoch 3, lr x 3; loss at the last epoch, 1 / (30 lr).
TABLE = [
    "| LR | score | loss |",
    "|---|---:|---:|",
    "| 0.1 | 0.3 | 0.33333 |",
    "| **0.2** | **0.6** | **0.16667** |",
]


def _study(folder: Path, program: str, *, name: str = "own", lrs: str = "[0.1, 0.2]") -> Path:
    (folder / "train.py").write_text(TRAIN_PY)
    (folder / "mymodel.py").write_text(CALLABLE_PY)
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        f"[train]\nepochs = 3\n[space]\nlr = {lrs}\n[resources]\ngpus = 0\ncpus = 1\n[program]\n{program}"
    )
    return path


COMMAND = f'command = ["{sys.executable}", "train.py", "--lr", "{{lr}}"]\n'


@pytest.mark.parametrize(
    "program",
    [COMMAND, pytest.param('callable = "mymodel:train"\n', marks=pytest.mark.slow)],  # each a whole launch
    ids=["command", "callable"],
)
def test_a_program_that_does_not_import_sweep_runs_as_a_grid_and_reports_its_own_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], program: str
) -> None:
    path = _study(tmp_path, program)
    results = tmp_path / "results"
    launched = run_sweep("launch", "--study", str(path), "--executor", "local", "--results-dir", str(results))
    assert launched.returncode == 0, launched.stderr
    assert "own: 2 trials (2 complete); best trial 1 score 0.6000 lr=0.2" in launched.stdout
    study = optuna.load_study(study_name="own", storage=default_url(results))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert [t.intermediate_values for t in study.trials][0] == {1: 0.1, 2: 0.2, 3: 0.3}
    run_dir = Path(study.trials[0].user_attrs["run_dir"])
    assert json.loads((run_dir / "params.json").read_text()) == {"epochs": 3, "lr": 0.1}
    if program == COMMAND:
        assert (run_dir / "program.0.out").read_text().strip() == "restart 0 trial 0 study own"
    assert sweep_main(capsys, "report", "--study", str(path), "--results-dir", str(results)).returncode == 0
    report = (results / "own.md").read_text().splitlines()
    start = report.index(TABLE[0])
    assert report[start : start + 4] == TABLE
    assert "other metrics at the best epoch of score" in (results / "own.md").read_text()
    status = sweep_main(capsys, "status", "--results-dir", str(results))
    assert "#0   COMPLETE lr=0.1  epochs 3/3  best 0.3000" in status.stdout


def test_a_typo_in_the_command_fails_three_trials_then_stops_the_launcher(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # python starts, and exits 2 at once: the script's name is misspelt
    program = f'command = ["{sys.executable}", "trian.py", "--lr", "{{lr}}"]\n'
    path = _study(tmp_path, program, lrs="[0.1, 0.2, 0.3, 0.4, 0.5]")
    results = tmp_path / "results"
    args = ("launch", "--study", str(path), "--executor", "debug", "--results-dir", str(results))
    result = sweep_main(capsys, *args)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: own: 3 trials failed in a row"), result.stderr
    assert "exited with status 2" in lines[0] and "trian.py" in lines[0] and "Traceback" not in result.stdout
    study = optuna.load_study(study_name="own", storage=default_url(results))
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3  # the other two never started
    # the next launch tries again: the failed planned configurations are run again
    assert sweep_main(capsys, *args).returncode == 1
    assert len(optuna.load_study(study_name="own", storage=default_url(results)).trials) == 6


def test_a_command_that_is_not_found_is_a_preflight_error_and_nothing_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _study(tmp_path, 'command = ["no-such-program-xyz", "--lr", "{lr}"]\n')
    results = tmp_path / "results"
    for dry in ([], ["--dry-run"]):
        args = ("launch", "--study", str(path), "--executor", "local", "--results-dir", str(results), *dry)
        assert_one_line_error(sweep_main(capsys, *args), "'no-such-program-xyz', which is not found")
    assert not results.exists()


def test_a_program_that_cannot_start_fails_with_that_reason(tmp_path: Path) -> None:
    job = ProgramJob(Program(command=("no-such-program-xyz",), workdir=str(tmp_path)), "score")
    with pytest.raises(ProgramFailed, match="cannot start 'no-such-program-xyz'"):
        job({}, str(tmp_path))


def test_a_misnamed_metric_stops_the_launch_at_the_first_trial_naming_the_keys_it_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the program logs 'acc' for two epochs; the study's metric is 'score': three trials planned
    (tmp_path / "quiet.py").write_text(
        "import json, os\nwith open(os.environ['SWEEP_RUN_DIR'] + '/metrics.jsonl', 'a') as f:\n"
        "    for epoch in (1, 2):\n"
        "        f.write(json.dumps({'epoch': epoch, 'acc': 0.5, 'loss': 1.0}) + '\\n')\n"
    )
    path = _study(tmp_path, f'command = ["{sys.executable}", "quiet.py"]\n', lrs="[0.1, 0.2, 0.3]")
    result = sweep_main(
        capsys, "launch", "--study", str(path), "--executor", "debug", "--results-dir", str(tmp_path / "r")
    )
    assert result.returncode == 1, result.stderr
    # the first epoch line without the metric names the keys that epoch has, once
    epoch_lines = [line for line in result.stdout.splitlines() if "score no value" in line]
    assert epoch_lines[0] == (
        f'trial 0 epoch 1/3  score no value (this epoch logged acc, loss; [study] metric = "score" in {path})'
    )
    assert epoch_lines[1] == "trial 0 epoch 2/3  score no value"
    assert "trial 0 failed: " in result.stdout and "without logging 'score'" in result.stdout
    lines = result.stderr.splitlines()
    assert lines == [
        f"error: own: trial 0 ended without logging 'score' in any of its 2 epochs; it logged acc, loss. "
        f"Set [study] metric in {path} to the name the program logs (or log 'score'); the running trials "
        "were stopped"
    ]
    study = optuna.load_study(study_name="own", storage=default_url(tmp_path / "r"))
    assert [t.state for t in study.trials] == [TrialState.FAIL]  # the other two never started


def test_a_trial_without_the_metric_is_an_ordinary_failure_once_another_trial_logged_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # lr 0.1 logs 'score'; lr 0.2 logs only 'acc': the metric's name is right, that trial failed
    (tmp_path / "half.py").write_text(
        "import json, os, sys\nkey = 'score' if sys.argv[1] == '0.1' else 'acc'\n"
        "with open(os.environ['SWEEP_RUN_DIR'] + '/metrics.jsonl', 'a') as f:\n"
        "    f.write(json.dumps({'epoch': 1, key: 0.5}) + '\\n')\n"
    )
    path = _study(tmp_path, f'command = ["{sys.executable}", "half.py", "{{lr}}"]\n')
    result = sweep_main(
        capsys, "launch", "--study", str(path), "--executor", "debug", "--results-dir", str(tmp_path / "r")
    )
    assert "own: 2 trials (1 complete, 1 fail)" in result.stdout
    assert "(this epoch logged" not in result.stdout
    # a launch with a failed trial exits 1 with one line, after its summary
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: own: 1 trial of this launch failed; `sweep status --study own` says why, "
        "`sweep launch` again runs failed planned trials again"
    ]
    assert "(full text: sweep status --study own --trial 1)" in result.stdout


def test_a_failing_program_fails_its_trial_with_the_end_of_its_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "crash.py").write_text(
        "import sys\nprint('loading data', file=sys.stderr)\nsys.exit('out of memory')\n"
    )
    path = _study(tmp_path, f'command = ["{sys.executable}", "crash.py"]\n', lrs="[0.1]")
    result = sweep_main(
        capsys, "launch", "--study", str(path), "--executor", "debug", "--results-dir", str(tmp_path / "r")
    )
    assert "exited with status 1: loading data | out of memory" in result.stdout
    # `sweep status` says why on the trial's line; `--trial N` gives the whole of it
    status = sweep_main(capsys, "status", "--results-dir", str(tmp_path / "r"))
    (line,) = [line for line in status.stdout.splitlines() if line.startswith("  #0")]
    reason = f"{sys.executable} exited with status 1: loading data | out of memory"
    assert line.endswith("failed: " + (reason if len(reason) <= 100 else reason[:99] + "…"))
    whole = sweep_main(capsys, "status", "--results-dir", str(tmp_path / "r"), "--trial", "0")
    assert whole.returncode == 0, whole.stderr
    lines = whole.stdout.splitlines()
    assert lines[0] == "study own trial 0: FAIL  lr=0.1" and "  reason:" in lines
    assert any("Traceback" in line for line in lines) and lines[-1].endswith("loading data | out of memory")
    missing = sweep_main(capsys, "status", "--results-dir", str(tmp_path / "r"), "--trial", "5")
    assert_one_line_error(missing, "study 'own' has no trial 5")


def test_sbatch_of_a_program_study_runs_the_program_under_the_same_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _study(tmp_path, COMMAND)
    results = tmp_path / "results"
    rendered = sweep_main(
        capsys, "sbatch", "--study", str(path), "--config", "1", "--results-dir", str(results)
    )
    assert rendered.returncode == 0, rendered.stderr
    run_dir = (results / "runs" / "own" / "config1-repeat0").resolve()
    assert f"-m sweep.executors.program {run_dir}" in rendered.stdout
    assert "#SBATCH --cpus-per-task=1" in rendered.stdout
    # what `srun` runs in that script, here without a cluster
    done = subprocess.run(
        [sys.executable, "-m", "sweep.executors.program", str(run_dir)],
        capture_output=True, text=True, timeout=deadline(120),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [e["score"] for e in read_epochs(run_dir / "metrics.jsonl")] == [0.2, 0.4, 0.6]
    assert json.loads((run_dir / "params.json").read_text()) == {"epochs": 3, "lr": 0.2}


@pytest.mark.slow
def test_the_example_program_runs_as_its_readme_says(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        sweep_cmd("launch", "--study", "examples/own-program/study.toml", "--executor", "local",
                  "--parallel", "2", "--results-dir", str(results)),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=deadline(300),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    study = optuna.load_study(study_name="own-program", storage=default_url(results))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert all(len(t.intermediate_values) == 5 for t in study.trials)
