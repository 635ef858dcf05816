"""The `sweep` command: launch and status; one-line errors with exit 2 and nothing written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from benchmarks.report_speed import make_study
from sweep.cli import main
from sweep.launcher import launch
from sweep.study import load_study
from tests.conftest import deadline
from tests.sweep.conftest import (
    ROOT,
    TINY_TRAIN,
    assert_one_line_error,
    instant_job,
    run_sweep,
    sweep_cmd,
    sweep_main,
    wait_for,
    write_study,
)


def test_unknown_study_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    result = run_sweep("launch", "--study", "nosuch", "--results-dir", str(tmp_path / "r"))
    assert_one_line_error(result, "no study named 'nosuch'", "smoke")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("study", "fragment"),
    [
        ({"name": "bad", "sampler": "grid", "bogus": 1}, "'bogus'"),
        ({"name": "bad", "sampler": "annealing"}, "sampler"),
    ],
)
def test_bad_study_file_is_one_line_and_writes_nothing(
    tmp_path: Path, study: dict, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    study_file = write_study(tmp_path / "bad.toml", study=study, space={"lr": [0.1]})
    result = sweep_main(
        capsys,
        "launch",
        "--study",
        str(study_file),
        "--executor",
        "debug",
        "--results-dir",
        str(tmp_path / "r"),
    )
    assert_one_line_error(result, str(study_file), fragment)
    assert not (tmp_path / "r").exists()


def test_unreachable_storage_is_one_line_and_creates_no_database(
    tiny_smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = sweep_main(
        capsys,
        "launch",
        "--study",
        str(tiny_smoke),
        "--executor",
        "debug",
        "--results-dir",
        str(tmp_path / "r"),
        "--storage",
        "sqlite:////nonexistent/dir/x.db",
    )
    assert_one_line_error(result, "sqlite:////nonexistent/dir/x.db")
    assert not Path("/nonexistent").exists() and not (tmp_path / "r").exists()


def test_status_without_a_database_is_an_error_and_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_one_line_error(sweep_main(capsys, "status", "--results-dir", str(tmp_path)), "no database at")
    assert not (tmp_path / "sweep.db").exists()


def test_launch_then_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study_file = write_study(
        tmp_path / "one.toml", study={"name": "one", "sampler": "grid"}, space={"lr": [0.05, 0.02]}
    )
    results = str(tmp_path / "r")
    # launched in this process, by jobs that train nothing (the CLI's launch: tests/test_quickstart.py)
    launch(
        load_study(str(study_file)), results_dir=Path(results), executor="debug", out=print, job=instant_job
    )
    capsys.readouterr()
    assert main(["status", "--results-dir", results]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "study one (val_acc)"
    assert lines[1].startswith("  #0   COMPLETE lr=0.05  epochs 2/2  best 0.")
    assert "job debug-" in lines[1]
    assert lines[2].startswith("  #1   COMPLETE lr=0.02  epochs 2/2")
    assert lines[3] == "  2 trials: 2 complete"
    assert main(["status", "--study", str(study_file), "--results-dir", results]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "study one (val_acc)"
    assert main(["status", "--study", "other", "--results-dir", results]) == 2
    assert "no study named 'other'; stored studies: one" in capsys.readouterr().err


def test_parallel_must_be_positive(
    tiny_smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = sweep_main(
        capsys, "launch", "--study", str(tiny_smoke), "--parallel", "0", "--results-dir", str(tmp_path)
    )
    assert_one_line_error(result, "--parallel must be 1 or more")


def test_module_entry_points_and_no_torch_in_the_launcher() -> None:
    code = (
        "import sys, sweep.cli, sweep.launcher, sweep.executors, sweep.executors.job, sweep.commands.status;"
        "assert 'torch' not in sys.modules, 'the launcher imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=deadline(60))
    for module in ("sweep", "sweep.cli"):
        result = subprocess.run(
            [sys.executable, "-m", module, "launch", "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=deadline(60),
        )
        assert result.returncode == 0 and "--executor {auto,slurm,local,debug}" in result.stdout


def test_a_command_imports_its_own_module_alone_and_help_lists_every_command() -> None:
    code = (
        "import sys; from sweep.cli import build_parser; build_parser(['status', '--study', 'launch']);"
        "print(sorted(m for m in ('sweep.launcher.command', 'sweep.report.command', 'sweep.commands.status',"
        " 'sweep.commands.cancel') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["['sweep.commands.status']"]
    listed = run_sweep("--help")
    assert listed.returncode == 0
    listed_names = [line.split()[0] for line in listed.stdout.splitlines() if re.match(r"    \S", line)]
    assert listed_names[:7] == ["launch", "status", "logs", "report", "dashboard", "cancel", "sbatch"]
    wrong = run_sweep("lunch", "--study", "x")  # an unknown command: argparse's line, naming the choices
    assert wrong.returncode == 2 and "invalid choice: 'lunch'" in wrong.stderr and "launch" in wrong.stderr


@pytest.mark.parametrize(("flag", "expected"), [([], 3), (["--parallel", "2"], 2)])
def test_parallel_defaults_to_the_study_array_parallelism(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: list[str], expected: int
) -> None:
    import sweep.launcher

    seen: dict[str, int] = {}
    summary = sweep.launcher.Summary("par")  # a launch whose trials all ended well
    monkeypatch.setattr(sweep.launcher, "launch", lambda spec, **kwargs: seen.update(kwargs) or summary)
    resources = {"gpus": 0, "cpus": 1, "array_parallelism": 3}
    study_file = write_study(
        tmp_path / "par.toml",
        study={"name": "par", "sampler": "grid"},
        space={"lr": [0.1]},
        resources=resources,
    )
    assert main(["launch", "--study", str(study_file), "--results-dir", str(tmp_path), *flag]) == 0
    assert seen["parallel"] == expected


def test_status_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    make_study(tmp_path, 1000)  # ~115 KB of status lines: more than a pipe holds (64 KB)
    proc = subprocess.Popen(
        sweep_cmd("status", "--all", "--results-dir", str(tmp_path)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("study bench")  # `sweep status | head -1`
    proc.stdout.close()
    assert proc.wait(timeout=deadline(60)) == 141
    assert proc.stderr.read() == ""  # no BrokenPipeError traceback


def test_a_results_dir_that_cannot_be_written_is_one_line_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where the results folder should be
    db = tmp_path / "other.db"
    result = sweep_main(
        capsys, "launch", "--study", "smoke", "--executor", "local", "--results-dir", str(blocker),
        "--storage", f"sqlite:///{db}",
    )  # fmt: skip
    assert_one_line_error(result, f"--results-dir {blocker}: cannot create", "is not a folder")
    assert not db.exists()  # the storage was never opened: no study, no trial left RUNNING


def test_file_system_errors_of_other_commands_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = sweep_main(capsys, "sbatch", "--study", "smoke", "--config", "0", "--results-dir", str(blocker))
    assert_one_line_error(result, str(blocker), "Not a directory")


def test_every_subcommand_help_starts_with_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("launch", "status", "report", "dashboard", "cancel", "sbatch"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        paragraphs = capsys.readouterr().out.split("\n\n")  # usage, then the description
        description = " ".join(paragraphs[1].split())
        assert description[0].isupper() and description.endswith("."), (command, description)


def _interrupt(
    args: list[str], started: Callable[[subprocess.Popen[str]], bool], stdout: Path | None = None
) -> tuple[int, str, str]:
    """Run `sweep ARGS` in a session of its own, its stdout in the file `stdout` (None: a pipe, read only
    by `started` until the end), send SIGINT to its process group (as Ctrl-C does) once `started(proc)`,
    and return its exit status, stdout and stderr."""
    with ExitStack() as stack:
        sink = stack.enter_context(stdout.open("w")) if stdout is not None else subprocess.PIPE
        proc = subprocess.Popen(
            sweep_cmd(*args), cwd=ROOT, stdout=sink, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            wait_for(
                lambda: started(proc) or proc.poll() is not None, timeout=deadline(60), what="the command"
            )
            assert proc.poll() is None, f"it ended before Ctrl-C: {proc.communicate()[1]}"
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=deadline(60))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    return proc.returncode, stdout.read_text() if stdout is not None else out, err


@pytest.mark.slow  # a real trial trains in the launcher
def test_ctrl_c_of_a_launch_with_a_trial_training_in_process_is_one_line(tmp_path: Path) -> None:
    """Fault: Ctrl-C of `sweep launch` printed two lines (the launcher's and the CLI's 'interrupted')."""
    study = write_study(
        tmp_path / "cc.toml",
        study={"name": "cc", "sampler": "grid"},
        space={"lr": [0.05]},
        train={**TINY_TRAIN, "epochs": 50},
    )
    results = tmp_path / "results"
    metrics = results / "runs" / "cc" / "0" / "metrics.jsonl"
    args = ["launch", "--study", str(study), "--executor", "debug", "--results-dir", str(results)]
    code, out, err = _interrupt(
        args, lambda _: metrics.exists() and metrics.stat().st_size > 0, tmp_path / "out"
    )
    assert code == 130
    said = [line for line in (out + err).splitlines() if "interrupt" in line.lower()]
    assert len(said) == 1 and said[0].startswith("cc: launch interrupted with 1 trial running"), out + err
    assert err == "" and "Traceback" not in out


def test_ctrl_c_of_a_dry_run_is_one_line(tmp_path: Path) -> None:
    """Fault: Ctrl-C of `sweep launch --dry-run` (a 10^6-point grid prints for seconds) said nothing."""
    # 10^4 points: ~500 KB of lines into a pipe the test does not read, so the dry run is surely still
    # printing (blocked on the full pipe) when the Ctrl-C comes, however fast or loaded the machine
    space = {
        "lr": [0.001 * (i + 1) for i in range(100)],
        "weight_decay": [1e-5 * (i + 1) for i in range(100)],
    }
    study = write_study(tmp_path / "huge.toml", study={"name": "huge", "sampler": "grid"}, space=space)
    args = ["launch", "--study", str(study), "--dry-run", "--results-dir", str(tmp_path / "r")]
    first: list[str] = []  # its first line, read before the Ctrl-C: it is printing

    def printing(proc: subprocess.Popen[str]) -> bool:
        first.append(proc.stdout.readline() if proc.stdout is not None else "")
        return True

    code, out, err = _interrupt(args, printing)
    assert first[0].startswith("config 0 repeat 0  lr=0.001"), first
    assert code == 130
    assert err.splitlines() == ["interrupted"], err
    assert "nothing submitted" not in out  # it stopped before the end of the list
    assert not (tmp_path / "r").exists()
