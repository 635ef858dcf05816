"""The live view of a study: its data from a real stored study, and the view driven in a real terminal
(tmux) for `sweep launch` and `sweep status --watch`; with stdout to a file, plain lines as before."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from sweep._compat import trial_of
from sweep.gpu_hours import study_hours
from sweep.launcher import launch
from sweep.store import records
from sweep.store.configs import register
from sweep.store.storage import default_url
from sweep.study import load_study
from sweep.study.identity import planned_configs
from sweep.views.live import LiveView, StudyProgress, progress, render, study_line
from tests.conftest import deadline
from tests.sweep.conftest import (
    ROOT,
    TINY_TRAIN,
    instant_job,
    processes_mentioning,
    sweep_cmd,
    wait_for,
    write_study,
)
from trainer.manifest import Attempt

TMUX = shutil.which("tmux")
# A trial of this size trains for a few seconds: long enough to be seen running in the view.
SLOW_TRAIN = {**TINY_TRAIN, "epochs": 8, "fake_train_size": 480}
STUDY_LINE = re.compile(
    r"study live \(val_acc\): (\d+) complete, (\d+) running, (\d+) queued, 0 pruned, 0 failed  "
    r"job-hours \d+\.\d\d \(no GPUs\)  ETA (unknown|\d+:\d\d)"
)
# A running trial's row with NO_COLOR: the bar's done part only (24 wide), then its epochs and numbers
TRIAL_ROW = re.compile(
    r"trial (\d+) (━*╸?) +epoch (\d+)/(\d+) last \d\.\d{4} best \d\.\d{4} "
    r"\d+\.\ds/epoch ETA \d+:\d\d lr=0\.0\d"
)


# -- the data ---------------------------------------------------------------------------------------------


def _finished(state: TrialState, start: datetime, hours: float, value: float | None = None) -> FrozenTrial:
    """A finished trial that ran `hours` from `start`, as a launch of another tool would store it."""
    return FrozenTrial(
        number=-1,
        trial_id=-1,
        state=state,
        value=value,
        datetime_start=start,
        datetime_complete=start + timedelta(hours=hours),
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
    )


def test_progress_counts_hours_eta_and_a_running_trials_epochs(tmp_path: Path) -> None:
    results = tmp_path / "results"
    small = write_study(
        tmp_path / "live.toml",
        study={"name": "live", "sampler": "grid"},
        train={**TINY_TRAIN, "epochs": 4},
        space={"lr": [0.1, 0.2]},
    )
    launch(load_study(small), results_dir=results, executor="debug", out=lambda line: None, job=instant_job)
    study = optuna.load_study(study_name="live", storage=default_url(results))
    records.write_study(study, metric="val_acc", plan={}, gpus=2)  # as a launch with [resources] gpus = 2
    now = datetime.now()
    study.add_trial(_finished(TrialState.COMPLETE, now - timedelta(hours=5), 2.0, value=0.5))
    study.add_trial(_finished(TrialState.PRUNED, now - timedelta(hours=3), 1.0))
    study.add_trial(_finished(TrialState.FAIL, now - timedelta(hours=2), 0.5))
    study.enqueue_trial({})  # WAITING
    # The study file now plans 4 configurations: 0 and 1 are done, 2 runs, 3 is not started
    larger = write_study(
        tmp_path / "larger.toml",
        study={"name": "live", "sampler": "grid"},
        train={**TINY_TRAIN, "epochs": 4},
        space={"lr": [0.1, 0.2, 0.3, 0.4]},
    )
    ids = register(study, load_study(larger)).ids  # as its launch numbers them
    # A running trial of lr 0.3, started 30 minutes ago, 3 of its 8 epochs in its run dir.
    lr3 = ids[planned_configs(load_study(larger))[2].key]
    template = records.running_template(
        {}, {}, records.trial_attrs(config=lr3, repeat=0, executor="local", launcher="h:1")
    )
    template.datetime_start = now - timedelta(minutes=30)
    study.add_trial(template)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"epochs": 8, "lr": 0.3}))
    epochs = [(1, 0.2, 10.0), (2, 0.5, 20.0), (3, 0.4, 30.0)]
    lines = [json.dumps({"epoch": e, "val_acc": acc, "epoch_seconds": s}) for e, acc, s in epochs]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    # its job's attempt, as the trainer records it: started 30 minutes ago, still running
    started = (now - timedelta(minutes=30)).astimezone().isoformat()
    attempt = {**{field.name: None for field in dataclasses.fields(Attempt)}, "number": 1, "started": started}
    (run_dir / "manifest.json").write_text(json.dumps({"attempts": [attempt]}))
    records.write(trial_of(study, study.get_trials(states=(TrialState.RUNNING,))[0]), run_dir=run_dir)

    data = progress(study, spec=load_study(larger), parallel=2, now=now)

    assert (data.complete, data.running, data.queued, data.pruned, data.failed) == (3, 1, 2, 1, 1)
    assert (data.name, data.metric, data.gpus) == ("live", "val_acc", 2)
    # GPU-hours as `sweep status` counts them: 2 GPUs x the running job's 0.5 h in its manifest; the
    # trials another tool stored say nothing of their jobs, and the instant ones ran no job
    assert 1.0 <= data.hours < 1.01
    assert data.hours == pytest.approx(study_hours(study.get_trials(), 2).used, abs=1e-3)
    # mean complete trial 2400 s (7200 s and two instant ones); the running one has 600 s left; the
    # 2 queued 4800 s: (600 + 4800) / 2 jobs at once
    assert data.eta_seconds == pytest.approx(2700, abs=5)
    (trial,) = data.trials
    assert (trial.epochs_done, trial.epochs, trial.last, trial.best) == (3, 8, 0.4, 0.5)
    assert trial.epoch_seconds == pytest.approx(20.0)
    assert trial.eta_seconds == pytest.approx(100.0)  # 5 epochs left at the mean 20 s
    assert study_line(data) == (
        "study live (val_acc): 3 complete, 1 running, 2 queued, 1 pruned, 1 failed  GPU-hours 1.00  ETA 45:00"
    )


def test_progress_of_a_study_without_gpus_or_finished_trials(tmp_path: Path) -> None:
    results = tmp_path / "results"
    spec = load_study(
        write_study(tmp_path / "live.toml", study={"name": "live", "sampler": "grid"}, space={"lr": [0.1]})
    )
    launch(spec, results_dir=results, executor="debug", out=lambda line: None, job=_failing_job)
    study = optuna.load_study(study_name="live", storage=default_url(results))

    data = progress(study, spec=spec)

    assert (data.complete, data.failed, data.gpus, data.eta_seconds, data.trials) == (0, 1, 0, None, ())
    assert "job-hours 0.00 (no GPUs)" in study_line(data) and study_line(data).endswith("ETA unknown")


def _failing_job(config: dict[str, object], run_dir: str) -> None:
    raise RuntimeError("no such data")


def test_the_view_reads_the_study_at_most_once_per_read_interval() -> None:
    reads: list[float] = []

    def build() -> StudyProgress:
        reads.append(time.monotonic())
        return StudyProgress("s", "m", 0, 0, 0, 0, 0, 0, 0.0, None, ())

    view = LiveView(build, read_s=0.3)
    for _ in range(20):  # the refresh thread and the caller ask far more often
        view.renderable()
    assert len(reads) == 1
    time.sleep(0.35)
    view.renderable()
    assert len(reads) == 2
    render(view.latest() or build())  # renders without a terminal


# -- in a real terminal -----------------------------------------------------------------------------------


class Terminal:
    """A tmux server of its own (160 x 40) whose one window runs a shell command."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        command = [str(TMUX), "-L", self.socket, *args]
        # the window's programs get the server's environment: not the terminal size pytest saw
        env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
        run = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=deadline(10), env=env
        )
        return run.stdout

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-x", "160", "-y", "40", "-s", "live", command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "live")

    def cursor_shown(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "live", "#{cursor_flag}").strip() == "1"

    def wait_for(self, found: Callable[[str], bool], *, timeout: float, what: str) -> str:
        """The first screen for which `found` holds (polled a few times a second)."""
        end = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < end:
            screen = self.screen()
            if found(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; the screen:\n{screen}")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    if TMUX is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is missing under CI=true; scripts/test.sh installs it")
        pytest.skip("tmux is not installed (apt-get install tmux)")
    term = Terminal(f"sweep-live-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    yield term
    with suppress(subprocess.SubprocessError):
        term.tmux("kill-server")
    for pid in processes_mentioning(str(tmp_path)):  # what the test started and left: jobs of its study
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _shell(*args: str | Path) -> str:
    """`sweep ARGS` as a shell command run from the repository, colours off (NO_COLOR) so that a bar's
    done part alone is drawn: its length then shows the epochs done."""
    return f"cd {shlex.quote(str(ROOT))} && NO_COLOR=1 " + shlex.join(sweep_cmd(*map(str, args)))


def _view_frame(screen: str) -> bool:
    """A frame with the study line and a running trial's bar between its first and last epoch."""
    rows = [m for m in TRIAL_ROW.finditer(screen) if 0 < int(m.group(3)) < int(m.group(4))]
    return STUDY_LINE.search(screen) is not None and bool(rows)


def _live_study(tmp_path: Path, **train: object) -> Path:
    return write_study(
        tmp_path / "live.toml",
        study={"name": "live", "sampler": "grid"},
        train={**SLOW_TRAIN, **train},
        space={"lr": [0.05, 0.01, 0.02]},
    )


@pytest.mark.slow
def test_launch_in_a_terminal_shows_the_view_and_ctrl_c_leaves_it_clean(
    tmp_path: Path, terminal: Terminal
) -> None:
    study, results = _live_study(tmp_path), tmp_path / "results"
    launch_cmd = _shell(
        "launch", "--study", study, "--executor", "local", "--parallel", "2", "--results-dir", results
    )
    terminal.start(f"{launch_cmd}; echo exit=$?; sleep 600")

    screen = terminal.wait_for(_view_frame, timeout=deadline(90), what="the view with a running trial")

    complete, running, queued, _ = STUDY_LINE.search(screen).groups()  # type: ignore[union-attr]
    assert int(complete) + int(running) + int(queued) == 3 and 1 <= int(running) <= 2
    for row in TRIAL_ROW.finditer(screen):
        assert len(row.group(2)) == 3 * int(row.group(3))  # 24 columns, 8 epochs: 3 an epoch
    assert re.search(r"^trial 0 submitted  job \d+  lr=0.05$", screen, re.M)  # events above the view
    assert not re.search(r"^trial \d+ epoch ", screen, re.M)  # the bars show the epochs instead
    assert not terminal.cursor_shown()

    terminal.tmux("send-keys", "-t", "live", "C-c")
    screen = terminal.wait_for(lambda s: "exit=130" in s, timeout=deadline(30), what="the launcher to stop")

    assert terminal.cursor_shown()
    assert "launch interrupted with" in screen
    assert not STUDY_LINE.search(screen) and "━" not in screen  # the view is gone, nothing half drawn
    lines = [line for line in screen.splitlines() if line.strip()]
    assert lines[-1] == "exit=130" and "launch interrupted" in "".join(lines[-4:-1])


@pytest.mark.slow
def test_launch_with_stdout_to_a_file_writes_the_plain_lines(tmp_path: Path, terminal: Terminal) -> None:
    study, results = _live_study(tmp_path, epochs=3), tmp_path / "results"
    out, err = tmp_path / "launch.out", tmp_path / "launch.err"
    launch_cmd = _shell("launch", "--study", study, "--executor", "local", "--results-dir", results)
    # in a terminal all the same: only stdout goes to the file
    terminal.start(
        f"{launch_cmd} >{shlex.quote(str(out))} 2>{shlex.quote(str(err))}; echo exit=$?; sleep 600"
    )

    terminal.wait_for(lambda s: "exit=" in s, timeout=deadline(120), what="the launch to end")

    assert "exit=0" in terminal.screen(), err.read_text()
    text = out.read_text()
    assert "\x1b" not in text and "━" not in text
    expected: list[str] = []
    for trial, lr in enumerate(["0.05", "0.01", "0.02"]):
        expected.append(rf"trial {trial} submitted  job \d+  lr={lr}")
        expected += [rf"trial {trial} epoch {epoch}/3  val_acc \d\.\d{{4}}" for epoch in (1, 2, 3)]
        expected.append(rf"trial {trial} complete  val_acc \d\.\d{{4}} \(best of 3 epochs\)")
    expected.append(r"live: 3 trials \(3 complete\); best trial \d val_acc \d\.\d{4} lr=0\.0\d")
    lines = text.splitlines()
    assert len(lines) == len(expected), text
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


@pytest.mark.slow
def test_status_watch_follows_the_study_until_it_ends(
    tmp_path: Path, terminal: Terminal, sessions: list[subprocess.Popen[str]]
) -> None:
    study, results = _live_study(tmp_path, epochs=6), tmp_path / "results"
    launch_out = tmp_path / "launch.out"
    with launch_out.open("w") as file:
        launcher = subprocess.Popen(
            sweep_cmd("launch", "--study", str(study), "--executor", "local", "--results-dir", str(results)),
            cwd=ROOT,
            stdout=file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    sessions.append(launcher)
    wait_for(lambda: "submitted" in launch_out.read_text(), timeout=deadline(60), what="the first trial")
    watch_args = ("status", "--watch", "--study", "live", "--results-dir", results)
    watch_out = tmp_path / "watch.out"
    with watch_out.open("w") as file:  # the same, stdout to a file: the plain status when it changes
        plain = subprocess.Popen(
            sweep_cmd(*map(str, watch_args), "--interval", "0.5"),
            cwd=ROOT,
            stdout=file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    sessions.append(plain)
    terminal.start(f"{_shell(*watch_args)}; echo exit=$?; sleep 600")

    terminal.wait_for(_view_frame, timeout=deadline(60), what="the view with a running trial")
    screen = terminal.wait_for(lambda s: "exit=" in s, timeout=deadline(120), what="the watch to end")

    assert launcher.wait(timeout=deadline(30)) == 0, launch_out.read_text()
    assert "exit=0" in screen
    assert not STUDY_LINE.search(screen) and "━" not in screen  # the view gave way to the plain status
    assert re.search(r"^study live \(val_acc\)$", screen, re.M) and "  3 trials: 3 complete" in screen
    assert plain.wait(timeout=deadline(30)) == 0
    text = watch_out.read_text()
    assert "\x1b" not in text
    blocks = text.split("study live (val_acc)\n")[1:]
    assert len(blocks) >= 2 and len(set(blocks)) == len(blocks), text  # printed again only when changed
    assert "RUNNING" in blocks[0] and blocks[-1].rstrip().endswith("3 trials: 3 complete")


def test_a_stalled_or_held_trial_says_so_in_its_row(tmp_path: Path) -> None:
    spec = load_study(
        write_study(
            tmp_path / "live.toml", study={"name": "live", "sampler": "grid"}, space={"lr": [0.1, 0.2]}
        )
    )
    study = optuna.create_study(study_name="live", storage=default_url(tmp_path))
    for config, said in (
        (0, {"stalled": "no new epoch for 14 min after epoch 3"}),
        (1, {"waiting": "submission limit (AssocMaxSubmitJobLimit)"}),
    ):
        template = records.running_template(
            {}, {}, records.trial_attrs(config=config, repeat=0, executor="slurm", launcher="h:1")
        )
        study.add_trial(template)
        records.write(trial_of(study, study.get_trials()[-1]), **said)  # type: ignore[arg-type]
    data = progress(study, spec=spec)
    assert [trial.note for trial in data.trials] == [
        "stalled",
        "waiting: submission limit (AssocMaxSubmitJobLimit)",
    ]
    console = Console(width=200, record=True, color_system=None)
    console.print(render(data))
    rows = [line for line in console.export_text().splitlines() if line.lstrip().startswith("trial ")]
    assert "stalled" in rows[0] and "waiting: submission limit (AssocMaxSubmitJobLimit)" in rows[1]
    records.write(trial_of(study, study.get_trials()[0]), stalled="")  # epochs came again
    assert progress(study, spec=spec).trials[0].note == ""
