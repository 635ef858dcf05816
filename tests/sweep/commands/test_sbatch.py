"""`sweep sbatch`: the rendered script against a golden file, and the CLI (no cluster needed)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from sweep._compat import sbatch_text
from sweep.commands.sbatch import render, sbatch_options
from sweep.errors import SweepError
from sweep.executors.slurm import slurm_parameters
from sweep.launcher import launch
from sweep.study import Resources, load_study
from tests.sweep.conftest import instant_job, run_sweep, write_study

GOLDEN = Path(__file__).parents[1] / "golden" / "train.sbatch"
RESOURCES = Resources(gpus=1, cpus=4, mem_gb=16, timeout_min=240, partition="gpu", slurm={"qos": "high"})


def test_rendered_script_matches_the_golden_file() -> None:
    script = render(
        study="optimizers",
        trial=3,
        resources=RESOURCES,
        run_dir=Path("/home/me/sweep/results/runs/optimizers/3"),
        workdir=Path("/home/me/sweep"),
        python="/home/me/sweep/.venv/bin/python",
    )
    if os.environ.get("SWEEP_ACCEPT_GOLDEN") == "1":
        GOLDEN.write_text(script)
    expected = GOLDEN.read_text()
    if script != expected:
        lines = expected.splitlines(True), script.splitlines(True)
        diff = "".join(difflib.unified_diff(*lines, "golden", "now"))
        pytest.fail(
            f"the rendered sbatch script changed:\n{diff}\n"
            "if the change is intended, accept it with\n"
            "  SWEEP_ACCEPT_GOLDEN=1 .venv/bin/python -m pytest tests/sweep/commands/test_sbatch.py"
        )


def test_options_are_the_ones_submitit_submits() -> None:
    options = sbatch_options(RESOURCES, name="sweep-optimizers-3")
    assert options == [
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --job-name=sweep-optimizers-3",
        "#SBATCH --mem=16384MB",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --partition=gpu",
        "#SBATCH --qos=high",
        "#SBATCH --time=240",
    ]


def test_nodes_and_tasks_per_node_become_sbatch_options_and_a_failed_rank_ends_the_job() -> None:
    resources = Resources(gpus=4, nodes=2, tasks_per_node=4)
    options = sbatch_options(resources, name="sweep-ddp-0")
    assert "#SBATCH --nodes=2" in options and "#SBATCH --ntasks-per-node=4" in options
    assert "#SBATCH --gpus-per-node=4" in options
    params = slurm_parameters(resources)
    assert params["srun_args"] == ["--kill-on-bad-exit=1"]
    text = sbatch_text(command="python -m x", folder="/submitit", job_name="sweep-ddp-0", **params)
    assert "srun --unbuffered --output /submitit/%j_%t_log.out --error /submitit/%j_%t_log.err" in text
    assert "--kill-on-bad-exit=1" in text.splitlines()[-1]  # submitit's srun of the job's tasks
    script = render(
        study="ddp", trial=0, resources=resources, run_dir=Path("/r/0"), workdir=Path("/w"), python="py"
    )
    assert "srun --unbuffered --kill-on-bad-exit=1 py -m sweep.executors.job /r/0" in script
    assert "srun_args" not in slurm_parameters(Resources()) and "kill-on-bad-exit" not in render(
        study="one", trial=0, resources=Resources(), run_dir=Path("/r/0"), workdir=Path("/w"), python="py"
    )


def test_cli_renders_a_stored_trial_and_a_planned_config(tmp_path: Path) -> None:
    study = write_study(
        tmp_path / "tiny.toml", study={"name": "tiny", "sampler": "grid"}, space={"lr": [0.1, 0.2]}
    )
    results = tmp_path / "results"
    planned = run_sweep("sbatch", "--study", str(study), "--config", "1", "--results-dir", str(results))
    assert planned.returncode == 0, planned.stderr
    run_dir = (results / "runs" / "tiny" / "config1-repeat0").resolve()
    assert f"-m sweep.executors.job {run_dir}\n" in planned.stdout
    assert '"lr": 0.2' in (run_dir / "config.json").read_text()
    assert "#SBATCH --job-name=sweep-tiny-config1-repeat0" in planned.stdout

    # the stored trials: the study launched in this process, with jobs that train nothing
    launch(
        load_study(str(study)), results_dir=results, executor="debug", out=lambda line: None, job=instant_job
    )
    stored = run_sweep("sbatch", "--study", str(study), "--trial", "1", "--results-dir", str(results))
    assert stored.returncode == 0, stored.stderr
    assert f"-m sweep.executors.job {(results / 'runs' / 'tiny' / '1').resolve()}\n" in stored.stdout

    missing = run_sweep("sbatch", "--study", str(study), "--trial", "7", "--results-dir", str(results))
    assert missing.returncode == 2 and "no trial 7" in missing.stderr


def test_unknown_planned_config_is_a_sweep_error(tmp_path: Path) -> None:
    from sweep.commands.sbatch import sbatch_script

    path = write_study(tmp_path / "t.toml", study={"name": "t", "sampler": "grid"}, space={"lr": [0.1]})
    spec = load_study(str(path))
    with pytest.raises(SweepError, match="no config 5 repeat 0"):
        sbatch_script(spec, results_dir=tmp_path, config=5)
