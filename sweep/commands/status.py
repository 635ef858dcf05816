"""`sweep status`: one line per trial of the stored studies, then each study's totals.

`trial_rows` collects plain data from the storage and the run dirs (`sweep.views.trial_row`);
`with_job_states` (`sweep.views.job_states`) asks the scheduler (squeue) or the process table about
RUNNING trials' jobs; `render` only formats.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import optuna

from sweep import base as base_mod
from sweep.commands.args import add_storage_args, subcommand, url
from sweep.commands.status_summary import Selection, select
from sweep.detached import describe as describe_detached
from sweep.errors import SweepError
from sweep.gpu_hours import StudyHours, study_hours
from sweep.polling import follow
from sweep.store import storage as storage_mod
from sweep.store.records import StudyRecord, failure_line
from sweep.study.files import find_study, load_study
from sweep.study.spec import StudySpec, Waits, params_text
from sweep.views import live
from sweep.views.job_states import SlurmStates, scheduler_lines, with_job_states
from sweep.views.trial_row import TrialRow, trial_row
from trainer.manifest import Attempt, read_manifest

REASON_CHARS = 100  # of a failed trial's reason on its status line
WATCH_SECONDS = 2.0  # `sweep status --watch`: how often the study is read


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
    summarized (`sweep.commands.status_summary`) unless `every_trial`.

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
    metric, direction = StudyRecord.of(study).metric or "value", study.direction.name.lower()
    return [trial_row(trial, metric, direction) for trial in study.get_trials(deepcopy=False)]


def trial_lines(name: str, study: optuna.Study, number: int) -> list[str]:
    """Everything `sweep status --trial N` shows of one trial, its whole failure reason included."""
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise SweepError(f"study '{name}' has no trial {number}; it has {len(trials)} trials, from 0")
    metric = StudyRecord.of(study).metric or "value"
    (row,) = with_job_states([trial_row(trials[number], metric, study.direction.name.lower())])
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
    lines += scheduler_lines([row])
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
        if attempt.ranks:  # a data-parallel run: its ranks, and the job's hosts where SLURM says
            slurm += f"  {attempt.ranks} ranks" + (f" on {attempt.job_nodes}" if attempt.job_nodes else "")
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


def budget_text(budget: float | None, used: float) -> str:
    """What is left of the study's GPU-hour budget, for the GPU-hours line ('' without a budget)."""
    if budget is None:
        return ""
    return f"; budget {budget:g}, {max(0.0, budget - used):.3f} left"


def render(name: str, metric: str, rows: list[TrialRow], *, hours: StudyHours | None = None) -> list[str]:
    """The lines of one study: a header, one line per trial (with its GPU-hours, when given), the totals."""
    lines = [f"study {name} ({metric})", *scheduler_lines(rows), *(trial_line(row, hours) for row in rows)]
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
    if row.paused:
        line += f"  paused at epoch {row.paused} (synchronous halving: waits for its rung to close)"
    return line


def summary_lines(name: str, metric: str, picked: Selection, direction: str, hours: StudyHours) -> list[str]:
    """A large study's status: its counts, running (orphaned ones said), last failed and best trials."""
    counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(picked.counts.items()))
    running = with_job_states([trial_row(t, metric, direction) for t in picked.running])
    orphaned = sum(row.orphaned for row in running)
    lines = [f"study {name} ({metric})", f"  {picked.total} trials: {counts}"]
    said = f", {orphaned} orphaned: job ended, `sweep launch` resumes or fails them" if orphaned else ""
    lines += [f"  running ({len(running)}{said}):", *scheduler_lines(running)]
    lines += [trial_line(row, hours) for row in running]
    if picked.failed:
        shown = f"the last {len(picked.failed)} of {picked.counts.get('FAIL', 0)}"
        failed = (trial_line(trial_row(t, metric, direction), hours) for t in picked.failed)
        lines += [f"  failed ({shown}):", *failed]
    complete = picked.counts.get("COMPLETE", 0)
    lines.append(f"  best {len(picked.best)} of {complete} complete:")
    lines += [trial_line(trial_row(t, metric, direction), hours) for t in picked.best]
    lines.append(f"  (`sweep status --study {name} --all` lists all {picked.total} trials)")
    return lines


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def watch(
    url: str, study_arg: str | None, *, interval: float = WATCH_SECONDS, out: Callable[[str], None] = print
) -> None:
    """`sweep status --watch`: on a terminal the live view until no trial of the study runs, then the
    plain status; elsewhere the plain status again, every `interval` seconds, whenever it changed. SLURM
    is asked about the running trials' jobs at most once per [waits] slurm_query_s (the study file's, when
    the watch finds it; else 30 s), a launcher's own budget, however long the watch stays open.

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
        # squeue at most once per [waits] slurm_query_s, as the launcher: the storage and the run dirs
        # are read every interval, the jobs' states shown as last asked in between
        slurm_states = SlurmStates((spec.waits if spec is not None else Waits()).slurm_query_s)
        terminal = live.on_terminal()  # asked once: within the view, sys.stdout is rich's proxy
        shown, idle = "", 0

        def step() -> bool:
            nonlocal shown, idle
            if terminal:
                data = view.latest()
                running = data is not None and data.running > 0
            else:
                rows = with_job_states(trial_rows(study), slurm_states)
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


# -- the command line ----------------------------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction) -> None:
    command = subcommand(commands, "status", help="one line per trial of the stored studies, and totals")
    command.add_argument("--study", help="a study name (or its .toml file); default: every stored study")
    command.add_argument("--trial", type=int, help="one trial's details, the whole reason of a failed one")
    every = (
        "a line for every trial (a study of over 50 trials: its counts, running, last failed and best ten)"
    )
    command.add_argument("--all", action="store_true", dest="every_trial", help=every)
    command.add_argument(
        "--watch",
        action="store_true",
        help="follow the study until no trial runs (live view on a terminal; else status when it changes)",
    )
    command.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="S",
        help="with --watch: seconds between reads (default: 2)",
    )
    add_storage_args(command)
    command.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sweep.study.files import study_name

    if args.watch:
        if args.trial is not None:
            raise SweepError("--watch follows a whole study; leave out --trial (or --watch)")
        watch(url(args), args.study, interval=args.interval)
        return 0
    name = study_name(args.study) if args.study is not None else None
    show(url(args), name, trial=args.trial, every_trial=args.every_trial)
    return 0
