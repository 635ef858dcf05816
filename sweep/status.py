"""`sweep status`: one line per trial of the stored studies, then each study's totals.

`trial_rows` collects plain data from the storage and the run dirs; `with_job_states` asks the
scheduler (squeue) or the process table about RUNNING trials' jobs; `render` only formats.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweep import base as base_mod
from sweep import live
from sweep import storage as storage_mod
from sweep.detached import describe as describe_detached
from sweep.errors import SweepError
from sweep.executors import local, slurm
from sweep.executors.files import JobFiles
from sweep.gpu_hours import StudyHours, study_hours
from sweep.owners import Owner
from sweep.polling import follow
from sweep.records import StudyRecord, TrialRecord, failure_line
from sweep.status_summary import Selection, select
from sweep.study.files import find_study, load_study
from sweep.study.spec import StudySpec, best_of, params_text
from trainer.manifest import Attempt, read_manifest
from trainer.metrics import read_epochs
from trainer.paths import RunPaths

REASON_CHARS = 100  # of a failed trial's reason on its status line
WATCH_SECONDS = 2.0  # `sweep status --watch`: how often the study is read


@dataclass(frozen=True)
class TrialRow:
    """What `sweep status` shows of one trial."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    params: dict[str, Any]
    epochs_done: int  # lines in the run's metrics.jsonl (or epochs reported, without a run dir)
    epochs: int | None  # the run's configured epochs, from its config.json
    best: float | None  # the trial's value; for a running or pruned trial, its best reported epoch
    job_id: str | None
    executor: str | None = None  # slurm | local | debug
    job_state: str | None = None  # what the scheduler says of a RUNNING trial's job
    run_dir: str | None = None
    launcher: str | None = None  # host:pid of the launcher that watches (or last watched) the trial
    reason: str | None = None  # why a FAILed trial failed: its whole text (`sweep status --trial N`)
    diverged: str | None = None  # what diverged, and when, of a trial stopped for a NaN/infinite metric
    stalled: str | None = None  # a RUNNING trial the launcher saw log no new epoch for long


def show(
    url: str,
    name: str | None,
    *,
    trial: int | None = None,
    out: Callable[[str], None] = print,
    every_trial: bool = False,
) -> None:
    """Print the status of study `name` (every stored study when None) in the storage at `url`; with
    `trial`, all that is known of that one trial. A study of more than SUMMARY_FROM trials is
    summarized (`sweep.status_summary`) unless `every_trial`.

    Raises:
        SweepError: The storage or the study does not exist, or the trial does not.
    """
    storage = storage_mod.open_storage(url, create=False, check_schema=False)  # it only reads
    with storage_mod.storage_errors(url):
        names = [name] if name is not None else storage_mod.study_names(storage)
        if trial is not None:
            if len(names) != 1:
                stored = ", ".join(names) or "none"
                raise SweepError(f"--trial needs --study NAME: the storage holds {stored}")
            study = storage_mod.load_existing(names[0], storage, url=url)
            out("\n".join(trial_lines(names[0], study, trial)))
            return
        for stored in names:
            study = storage_mod.load_existing(stored, storage, url=url)
            record = StudyRecord.of(study)
            metric = record.metric or "value"
            gpus = 1 if record.gpus is None else record.gpus
            picked = None if every_trial else select(study, storage)
            if picked is not None:
                hours = study_hours(picked.facts, gpus)
                direction = study.direction.name.lower()
                out("\n".join(summary_lines(stored, metric, picked, direction, hours)))
            else:
                hours = study_hours(study.get_trials(deepcopy=False), gpus)
                out("\n".join(render(stored, metric, with_job_states(trial_rows(study)), hours=hours)))
            out(f"  {hours.line()}" + budget_text(record.budget, hours.used))
            detached = StudyRecord.of(study).detached
            if detached is not None:
                out(f"  launcher: {describe_detached(detached)}")
    if not names:
        out(f"no studies in {storage_mod.shown(url)}")


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    """One row per trial of `study`, in trial order."""
    direction = study.direction.name.lower()
    return [_row(trial, direction) for trial in study.get_trials(deepcopy=False)]


def trial_lines(name: str, study: optuna.Study, number: int) -> list[str]:
    """Everything `sweep status --trial N` shows of one trial, its whole failure reason included."""
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise SweepError(f"study '{name}' has no trial {number}; it has {len(trials)} trials, from 0")
    (row,) = with_job_states([_row(trials[number], study.direction.name.lower())])
    epochs = f"{row.epochs_done}/{row.epochs}" if row.epochs is not None else str(row.epochs_done)
    best = "-" if row.best is None else f"{row.best:.4f}"
    job = f"{row.job_id or '-'} ({row.executor or 'no executor'}" + (
        f"; {row.job_state}" if row.job_state else ""
    )
    lines = [
        f"study {name} trial {row.number}: {row.state}  {params_text(row.params) or '-'}",
        f"  epochs {epochs}  best {best}",
        f"  job {job})",
        f"  run dir {row.run_dir or '-'}",
        f"  launcher {row.launcher or '-'}",
    ]
    if row.run_dir is not None:
        lines += manifest_lines(read_manifest(Path(row.run_dir)))
    if row.reason:
        lines += ["  reason:", *(f"    {line}" for line in row.reason.rstrip().splitlines())]
    if row.diverged:
        lines.append(f"  diverged: {row.diverged} (its job was stopped; its epochs stay in its run dir)")
    if row.stalled:
        lines.append(f"  stalled: {row.stalled} (its job still runs)")
    return lines


def manifest_lines(attempts: list[Attempt]) -> list[str]:
    """The run's manifest.json: each attempt's times and place, the last one's code and software whole."""
    if not attempts:
        return ["  manifest: none (the run has not started, or its program does not write one)"]
    lines = [f"  manifest: {len(attempts)} attempt{'s' if len(attempts) != 1 else ''}"]
    for attempt in attempts:
        slurm = f"  slurm job {attempt.slurm_job_id}" if attempt.slurm_job_id else ""
        if attempt.slurm_job_id and attempt.slurm_partition:
            slurm += f" on {attempt.slurm_partition}"
        if attempt.slurm_job_id and attempt.slurm_node:
            slurm += f" ({attempt.slurm_node})"
        ended = attempt.ended or "-"
        lines.append(f"    #{attempt.number} {attempt.started} to {ended}  on {attempt.hostname}{slurm}")
    last = attempts[-1]
    if last.git_commit is None:
        code = "a git repository with no commit yet" if last.git_no_commit else "not a git checkout"
    else:
        code = f"commit {last.git_commit}" + (
            f", dirty (diff sha256 {last.git_diff_sha256})" if last.git_dirty else ", clean"
        )
        if last.git_untracked:
            code += f", {last.git_untracked} untracked file{'s' if last.git_untracked != 1 else ''}"
    software = f"Python {last.python} ({last.python_executable}), torch {last.torch or '-'}"
    software += f", CUDA {last.cuda or '-'}, cuDNN {last.cudnn or '-'}"
    gpus = last.gpu_text + (f" (driver {last.gpu_driver})" if last.gpu_driver else "")
    return [
        *lines,
        f"    code {last.program_dir}: {code}",
        f"    {software}",
        f"    GPUs {gpus}",
        f"    packages sha256 {last.packages_sha256} ({last.packages} installed)",
    ]


def _row(trial: FrozenTrial, direction: str) -> TrialRow:
    record = TrialRecord.of(trial)
    epochs_done, epochs = len(trial.intermediate_values), None
    if record.run_dir is not None:
        paths = RunPaths(record.run_dir)
        epochs_done = len(read_epochs(paths.metrics)) or epochs_done
        epochs = _configured_epochs(paths.config) or _configured_epochs(JobFiles(record.run_dir).params)
    best = trial.value
    if best is None:
        best = best_of(trial.intermediate_values.values(), direction)
    return TrialRow(
        number=trial.number,
        state=trial.state.name,
        params=dict(trial.params),
        epochs_done=epochs_done,
        epochs=epochs,
        best=best,
        job_id=record.job_id,
        executor=record.executor,
        run_dir=None if record.run_dir is None else str(record.run_dir),
        launcher=record.launcher,
        reason=record.traceback if trial.state.name == "FAIL" else None,
        diverged=record.diverged,
        # a trial a submission limit holds has no job to ask SLURM about: its reason is its state
        job_state=f"waiting: {record.waiting}" if record.waiting and record.job_id is None else None,
        stalled=record.stalled if trial.state.name == "RUNNING" else None,
    )


def _configured_epochs(path: Path) -> int | None:
    try:
        epochs = json.loads(path.read_text()).get("epochs")
    except (OSError, ValueError, AttributeError):
        return None
    return epochs if isinstance(epochs, int) else None


def with_job_states(rows: list[TrialRow]) -> list[TrialRow]:
    """The rows, RUNNING trials' with what SLURM or the process table says of their job."""
    return with_local_states(with_slurm_states(rows))


def with_slurm_states(rows: list[TrialRow]) -> list[TrialRow]:
    """`sweep status` rows, the RUNNING SLURM trials' with their job's state (one squeue call).

    Read only: an ended job is shown as such, and the next `sweep launch` resumes or fails its trial.
    """
    ids = [row.job_id for row in rows if row.state == "RUNNING" and row.executor == "slurm" and row.job_id]
    if not ids or shutil.which("squeue") is None:
        return rows
    try:
        states = {job_id: _slurm_text(state) for job_id, state in slurm.job_states(ids).items()}
    except slurm.SlurmUnavailable as err:
        states = dict.fromkeys(ids, f"slurm: {err}")
    return [replace(row, job_state=states[row.job_id]) if row.job_id in states else row for row in rows]


def _slurm_text(state: slurm.JobState) -> str:
    if state.live:
        waits = f" ({state.reason})" if state.state == "PENDING" and state.reason not in ("", "None") else ""
        return f"slurm {state.state}{waits}"
    return f"slurm {state.state}: job ended; sweep launch resumes or fails the trial"


def with_local_states(rows: list[TrialRow]) -> list[TrialRow]:
    """`sweep status` rows, the RUNNING local trials' with whether their job's process still runs.

    A local job runs on its launcher's host; started on another host it is shown as such, unchecked.
    """
    here = socket.gethostname()
    states: dict[int, str] = {}
    for row in rows:
        if row.state != "RUNNING" or row.executor != "local" or not row.job_id or not row.run_dir:
            continue
        host = Owner.parse(row.launcher).host if row.launcher else ""
        if host and host != here:
            states[row.number] = f"local on {host}"
            continue
        folder = JobFiles(Path(row.run_dir).absolute()).folder
        if not (row.job_id.isdigit() and local.controls(int(row.job_id), folder)):
            states[row.number] = "local: ended; `sweep launch` resumes it"
            continue
        gpus = local.job_gpus(int(row.job_id))
        states[row.number] = "local: running" + (f" on GPU {','.join(map(str, gpus))}" if gpus else "")
    return [replace(row, job_state=states[row.number]) if row.number in states else row for row in rows]


def budget_text(budget: float | None, used: float) -> str:
    """What is left of the study's GPU-hour budget, for the GPU-hours line ('' without a budget)."""
    if budget is None:
        return ""
    return f"; budget {budget:g}, {max(0.0, budget - used):.3f} left"


def render(name: str, metric: str, rows: list[TrialRow], *, hours: StudyHours | None = None) -> list[str]:
    """The lines of one study: a header, one line per trial (with its GPU-hours, when given), the totals."""
    lines = [f"study {name} ({metric})", *(trial_line(row, hours) for row in rows)]
    counts = Counter(row.state for row in rows)
    totals = ", ".join(f"{count} {state.lower()}" for state, count in sorted(counts.items()))
    lines.append(f"  {len(rows)} trials: {totals or 'none'}")
    return lines


def trial_line(row: TrialRow, hours: StudyHours | None = None) -> str:
    """One trial's status line."""
    params = params_text(row.params) or "-"
    epochs = f"{row.epochs_done}/{row.epochs}" if row.epochs is not None else str(row.epochs_done)
    best = "-" if row.best is None else f"{row.best:.4f}"
    job = (row.job_id or "-") + (f" ({row.job_state})" if row.job_state else "")
    line = f"  #{row.number:<3} {row.state:<8} {params}  epochs {epochs}  best {best}  job {job}"
    spent = hours.of(row.number) if hours is not None else None
    if spent is not None and spent.attempts:
        line += f"  gpu-h {spent.used:.3f}" + (f" (wasted {spent.wasted:.3f})" if spent.wasted else "")
    if row.reason:  # the line that says what happened, cut: `sweep status --trial N` has it whole
        line += f"  failed: {_cut(failure_line(row.reason), REASON_CHARS)}"
    if row.diverged:
        line += f"  diverged: {row.diverged}"
    if row.stalled:
        line += f"  stalled: {row.stalled}"
    return line


def summary_lines(name: str, metric: str, picked: Selection, direction: str, hours: StudyHours) -> list[str]:
    """A large study's status: its counts, running (stalled ones said), last failed and best trials."""
    counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(picked.counts.items()))
    running = with_job_states([_row(t, direction) for t in picked.running])
    stalled = sum("ended" in (row.job_state or "") for row in running)
    lines = [f"study {name} ({metric})", f"  {picked.total} trials: {counts}"]
    said = f", {stalled} stalled: job ended, `sweep launch` resumes or fails them" if stalled else ""
    lines += [f"  running ({len(running)}{said}):", *(trial_line(row, hours) for row in running)]
    if picked.failed:
        shown = f"the last {len(picked.failed)} of {picked.counts.get('FAIL', 0)}"
        lines += [f"  failed ({shown}):", *(trial_line(_row(t, direction), hours) for t in picked.failed)]
    complete = picked.counts.get("COMPLETE", 0)
    lines.append(f"  best {len(picked.best)} of {complete} complete:")
    lines += [trial_line(_row(t, direction), hours) for t in picked.best]
    lines.append(f"  (`sweep status --study {name} --all` lists all {picked.total} trials)")
    return lines


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def watch(
    url: str, study_arg: str | None, *, interval: float = WATCH_SECONDS, out: Callable[[str], None] = print
) -> None:
    """`sweep status --watch`: on a terminal the live view until no trial of the study runs, then the
    plain status; elsewhere the plain status again, every `interval` seconds, whenever it changed.

    Raises:
        SweepError: No study to watch (none or several stored and no --study), or a bad --interval.
    """
    if not interval > 0:
        raise SweepError(f"--interval must be more than 0 seconds, got {interval}")
    storage = storage_mod.open_storage(url, create=False)
    with storage_mod.storage_errors(url):
        names = storage_mod.study_names(storage)
        if study_arg is None and len(names) != 1:
            raise SweepError(f"--watch needs --study NAME: the storage holds {', '.join(names) or 'none'}")
        name = load_study(study_arg).name if study_arg and study_arg.endswith(".toml") else study_arg
        name = name or names[0]
        study = storage_mod.load_existing(name, storage, url=url)
        spec = base_mod.applied(_study_file(study_arg or name, name), study)
        view = live.watch_view(study, spec=spec, read_s=max(interval, live.READ_SECONDS))
        terminal = live.on_terminal()  # asked once: within the view, sys.stdout is rich's proxy
        shown, idle = "", 0

        def step() -> bool:
            nonlocal shown, idle
            if terminal:
                data = view.latest()
                running = data is not None and data.running > 0
            else:
                rows = with_job_states(trial_rows(study))
                text = "\n".join(render(name, StudyRecord.of(study).metric or "value", rows))
                if text != shown:
                    out(text)
                    shown = text
                running = any(row.state == "RUNNING" for row in rows)
            # Nothing running at two reads in a row ends the watch: one read may fall between a trial's
            # end and the start of the next.
            idle = 0 if running else idle + 1
            return idle >= 2

        with view if terminal else nullcontext(view):
            follow(step, every_s=interval)
    if terminal:
        show(url, name, out=out)


def _study_file(study_arg: str, name: str) -> StudySpec | None:
    """The study file of a watched study, which counts the runs not started yet; None when there is
    none of that name, or it cannot be read (the watch then counts only stored trials)."""
    path = Path(study_arg) if study_arg.endswith(".toml") else find_study(study_arg)
    if path is None:
        return None
    try:
        spec = load_study(path)
    except SweepError:
        return None
    return spec if spec.name == name else None
