"""`sweep launch`: set a study up (its executor, results folder, storage and stored plan), run the
`Launcher` loop to the end, and print one summary line. Ctrl-C says what is left and how to go on.

The package is the launcher process and its private parts: `loop` (the Launcher loop), `source` (the
next trial), `takeover` (peers' trials), `budget` (GPU-hours), `preflight` (what would fail every
trial) and `detach` (starting a launcher that leaves the terminal). This module is its face:
`prepare()`, `launch()`, `dry_run()` and the summary.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep import base as base_mod
from sweep.errors import Printer, StudyStopped, SweepError, print_line
from sweep.executors import Executor, JobFn, chosen, make_executor
from sweep.launcher import preflight
from sweep.launcher.budget import check_budget
from sweep.launcher.intervals import DEFAULT_INTERVALS, Intervals
from sweep.launcher.loop import READ_EVERY_S, Launcher
from sweep.launcher.sigterm import Terminated, stopped_line
from sweep.launcher.watched import interrupted_line
from sweep.store import configs, records
from sweep.store import storage as storage_mod
from sweep.store.outage import StorageOutage
from sweep.study import plan
from sweep.study.plan import check_same_plan, make_pruner, make_sampler, plan_fingerprint
from sweep.study.spec import StudySpec, best_of, params_text
from sweep.views import live


@dataclass
class Summary:
    """How a launch ended: trial counts by state and the best trial."""

    study: str
    states: Counter[str] = field(default_factory=Counter)
    best: FrozenTrial | None = None
    failed_here: int = 0  # trials of this launch whose job failed: `sweep launch` exits 1


@dataclass(frozen=True)
class Prepared:
    """A study ready to launch: its executor, stored study (created, checked, its plan stored) and URL."""

    study: optuna.Study
    executor: Executor
    storage_url: str
    change: str | None = None  # how the file's configurations differ from the stored ones, in one line
    spec: StudySpec | None = None  # the study with its [study] base's values (None: as given)


def prepare(
    spec: StudySpec,
    *,
    results_dir: Path,
    storage_url: str | None = None,
    executor: str = "auto",
    parallel: int = 1,
    pruner: optuna.pruners.BasePruner | None = None,
    out: Printer = print_line,
) -> Prepared:
    """Everything `launch` does before its launcher runs: the checks that would fail every trial, the
    executor, the results folder, the storage, the study (created, or checked against this file).

    Raises:
        SweepError: Unreachable storage, an unknown executor, a study stored with another direction or
            plan, or made by another tool; a [study] base missing, unfinished or lacking a value.
    """
    # a base's values come first: they are what the checks check (nothing is written for them)
    spec, inherited = base_mod.with_base(spec, storage_mod.url_of(storage_url, Path(results_dir)))
    found = preflight.problems(spec, executor)
    if found:  # before the storage is touched: nothing stored, nothing submitted
        raise SweepError("\n".join(found))  # one error line per problem
    job_executor = make_executor(executor, spec.resources, parallel=parallel, waits=spec.waits, out=out)
    # A launch that cannot write its run dirs must fail before it touches the storage, and one whose
    # storage is unreachable before it creates any folder: check first, create after.
    runs_dir = storage_mod.runs_dir(results_dir, spec.name)
    _check_creatable(runs_dir, str(results_dir))
    if storage_url is None:
        _make_dir(Path(results_dir), str(results_dir))  # the default storage lives in the results folder
        storage_url = storage_mod.default_url(Path(results_dir))
    outage = StorageOutage(spec.waits.storage_outage_min * 60, out)
    storage = storage_mod.open_storage(storage_url, create=True, outage=outage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = storage_mod.open_study(
        spec.name,
        storage,
        direction=spec.direction,
        sampler=make_sampler(spec),
        pruner=pruner or make_pruner(spec),
        url=storage_url,
    )
    with storage_mod.storage_errors(storage_url):
        check_same_plan(spec, study, url=storage_mod.shown(storage_url))
        base_mod.write(study, inherited)
        registered = configs.register(study, spec)  # before the plan is replaced: old trials need it
        # what the commands that read a study without its file use
        gpus = spec.resources.trial_gpus  # all its nodes': what GPU-hours count
        records.write_study(study, metric=spec.metric, plan=plan_fingerprint(spec), gpus=gpus)
        records.write_plan(study, plan_fingerprint(spec))
    _make_dir(runs_dir, str(results_dir))  # only now: a refused launch leaves no empty run folders
    change = registered.change_line(spec.name)
    return Prepared(study=study, executor=job_executor, storage_url=storage_url, change=change, spec=spec)


def launch(
    spec: StudySpec,
    *,
    results_dir: Path,
    storage_url: str | None = None,
    executor: str = "auto",
    parallel: int = 1,
    read_every_s: float = READ_EVERY_S,
    pruner: optuna.pruners.BasePruner | None = None,
    out: Printer = print_line,
    job: JobFn | None = None,
    budget_gpu_hours: float | None = None,
    on_start: Callable[[optuna.Study], frozenset[str]] | None = None,
    intervals: Intervals = DEFAULT_INTERVALS,
) -> Summary:
    """Run (or continue) the study `spec` to the end and print one line per trial event and a summary.

    Args:
        spec: The validated study.
        results_dir: Holds the default storage (sweep.db) and the run dirs (runs/<study>/<trial>/).
        storage_url: Any SQLAlchemy URL; default `sqlite:///<results_dir>/sweep.db`.
        executor: auto | slurm | local | debug.
        parallel: Jobs running at once.
        read_every_s: Seconds between reads of the running trials' metrics files.
        pruner: Replaces the study file's pruner (for tests and the Python API).
        out: Where progress lines go.
        job: What each trial's job calls, `job(config_dict, run_dir)`; default `TrainJob()` (the trainer).
            Benchmarks pass a no-op here to measure the launcher alone.
        budget_gpu_hours: Replaces [study] budget_gpu_hours: no new trial starts once the study's GPU-hours
            used plus those its running trials are expected to use reach it (`sweep.launcher.budget`).
        on_start: A detached launcher's (`sweep.launcher.detach`): records where this run of it runs,
            once the study is open, and returns the launcher ids of its earlier runs (their claims are
            taken back at once).

    Raises:
        SweepError: Unreachable storage, an unknown executor, a study stored with another direction.
    """
    budget = spec.budget_gpu_hours if budget_gpu_hours is None else budget_gpu_hours
    check_budget(budget_gpu_hours, spec.resources.trial_gpus, "--budget-gpu-hours")  # the file's is checked
    try:
        prepared = prepare(
            spec,
            results_dir=results_dir,
            storage_url=storage_url,
            executor=executor,
            parallel=parallel,
            pruner=pruner,
            out=out,
        )
    except KeyboardInterrupt:  # the CLI prints nothing for a launch: its one line is said here
        out(f"{spec.name}: launch interrupted while setting up; no trial was started")
        raise
    study, storage_url = prepared.study, prepared.storage_url
    spec = prepared.spec or spec
    if prepared.change is not None:
        out(prepared.change)
    with storage_mod.storage_errors(storage_url):
        records.write_budget(study, budget)  # `sweep status` shows what is left of it
    # On a terminal the launcher's lines go above a live view of the study; elsewhere plain, as ever
    shown = out is print_line and live.on_terminal()
    view = live.launch_view(spec, storage_url, parallel=parallel) if shown else None
    out = view or out
    prepared.executor.out = out  # its outage lines go above the live view too
    launcher = Launcher(
        spec,
        study,
        prepared.executor,
        results_dir=Path(results_dir),
        parallel=parallel,
        read_every_s=read_every_s,
        out=out,
        job=job,
        predecessors=on_start(study) if on_start is not None else frozenset(),
        budget=budget,
        intervals=intervals,
    )
    with storage_mod.storage_errors(storage_url):
        try:
            with view or nullcontext():  # closed first: what follows is printed under the view, plain
                launcher.run()
        except KeyboardInterrupt:  # Ctrl-C: say what is left and how to go on; the CLI exits 130
            out(interrupted_line(spec.name, launcher.running, launcher.starting, launcher.executor.name))
            raise
        except Terminated:  # `sweep cancel` (on this host), or a kill: one line; the CLI exits 143
            out(stopped_line(spec.name))
            raise
        except StudyStopped as stopped:  # the CLI prints the line and exits 1
            launcher.stop_running(f"stopped with the launcher: {stopped}")
            raise
        summary = summarize(spec, study)
    summary.failed_here = launcher.failures.total
    out(summary_line(summary, spec.metric))
    prepared.executor.finish()  # e.g. a pruned job's scancel waiting for the controller: said, waited for
    return summary


def _check_creatable(folder: Path, given: str) -> None:
    """Raise a SweepError when `folder` cannot be made: its nearest existing ancestor is a file, or
    not writable. Creates nothing."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = "is not a folder" if not existing.is_dir() else None
    if problem is None and existing != folder and not os.access(existing, os.W_OK | os.X_OK):
        problem = "is not writable"
    if problem is not None:
        raise SweepError(
            f"--results-dir {given}: cannot create {folder} ({existing} {problem}); "
            "choose a folder you can write to"
        )


def _make_dir(folder: Path, given: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SweepError(
            f"--results-dir {given}: cannot create {folder} ({err.strerror}); "
            "choose a folder you can write to"
        ) from None


def summary_line(summary: Summary, metric: str) -> str:
    counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(summary.states.items()))
    total = sum(summary.states.values())
    line = f"{summary.study}: {total} trial{'' if total == 1 else 's'} ({counts or 'none'})"
    if summary.best is not None and summary.best.value is not None:
        best = summary.best
        line += f"; best trial {best.number} {metric} {best.value:.4f} {params_text(best.params)}".rstrip()
    return line


def summarize(spec: StudySpec, study: optuna.Study) -> Summary:
    """Trial counts by state, and the best trial, of the stored study."""
    trials = study.get_trials(deepcopy=False)
    summary = Summary(study=spec.name, states=Counter(t.state.name for t in trials))
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    summary.best = best_of(
        complete, spec.direction, key=lambda t: t.value if t.value is not None else math.nan
    )
    return summary


def dry_run(spec: StudySpec, *, storage_url: str, executor: str, out: Printer = print_line) -> None:
    """`sweep launch --dry-run`: print what a launch would do next; write nothing.

    Raises:
        SweepError: The stored study has another plan, or something would fail every trial (the plan
            is printed first: what would stop the launch comes last).
    """
    given = spec
    spec, inherited = base_mod.with_base(spec, storage_url)
    if inherited is not None:
        out(base_mod.inherited_line(given, inherited))
    stored = storage_mod.stored_study(storage_url, spec.name)  # read only: a dry run creates nothing
    if stored is not None:
        check_same_plan(spec, stored, url=storage_mod.shown(storage_url))
    ids = None  # a study not stored yet: its configurations are numbered in file order
    if stored is not None:
        with storage_mod.storage_errors(storage_url):
            change = configs.preview(stored, spec)
        if change.change_line(spec.name) is not None:
            out(str(change.change_line(spec.name)))
        ids = change.ids
    plan.dry_run(spec, study=stored, out=out, ids=ids)
    out(f"executor: {chosen(executor)}")
    found = preflight.problems(spec, executor)
    if found:
        raise SweepError("\n".join(found))  # one error line per problem


def failed_line(summary: Summary) -> str | None:
    """The error line of a launch some of whose trials failed (it exits 1); None when none did."""
    count = summary.failed_here
    if not count:
        return None
    trials = "1 trial" if count == 1 else f"{count} trials"
    return (
        f"{summary.study}: {trials} of this launch failed; `sweep status --study {summary.study}` says why, "
        "`sweep launch` again runs failed planned trials again"
    )
