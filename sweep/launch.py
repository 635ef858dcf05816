"""The launcher: runs a study's trials through an executor, and is the only writer to the study storage.

The loop (DESIGN.md) is a few named steps:

    reconcile  once at start: list the planned trials not yet in the study; re-attach RUNNING trials
               whose job is alive, resume those whose job is gone (same trial, same run dir)
    ask        the next trial: a queued one, a planned one (created running just then), else one the
               tpe/random sampler suggests
    submit     write the trial's config.json and start its job
    poll       read each running trial's metrics.jsonl
    report     `trial.report(metric, epoch)` for each new epoch; prune: cancel the job, tell PRUNED
    tell       a finished job: its best metric (COMPLETE), or FAIL with the traceback kept

Every Optuna trial is one (configuration, repeat): user attributes `config` (the index of the
configuration: planned ones first, in file order, then sampled ones) and `repeat` (the seed offset)
say which, so a restart never starts a configuration that is COMPLETE, PRUNED or still running again. A
planned configuration whose trial FAILed is run again by the next launch (the cause may be fixed);
a sampled one is not (it used up its place in n_trials).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from sweep import storage as storage_mod
from sweep.errors import SweepError
from sweep.executors import Executor, Job, JobFn, make_executor, wait_for_end
from sweep.job import TrainJob
from sweep.status import params_text
from sweep.study import Categorical, Dimension, FloatRange, StudySpec
from trainer.config import RESUMABLE_CHANGES, TrainConfig
from trainer.metrics import EpochMetrics, read_metrics
from trainer.paths import RunPaths

POLL_SECONDS = 0.5  # how often running trials' metrics files are read
FIRST_POLL_SECONDS = 0.05  # the first sleep after something happened; doubled up to POLL_SECONDS
MAX_SUBMISSIONS = 3  # a trial whose job vanishes (killed, out of memory) this often is FAILed
LAUNCHER_ID = f"{socket.gethostname()}:{os.getpid()}"  # who watches a RUNNING trial (user attr "launcher")
# A launcher stamps its running trials (user attr "heartbeat", Unix time) this often; a launcher on
# another host whose stamp is older than HEARTBEAT_STALE_S is presumed dead and its trials are taken over.
HEARTBEAT_SECONDS = 30.0
HEARTBEAT_STALE_S = 4 * HEARTBEAT_SECONDS
TAKEN_STATES = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)

Printer = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


# -- planning ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedTrial:
    """One trial the study file fixes: configuration `config` (0-based) run with seed offset `repeat`."""

    config: int
    repeat: int
    params: dict[str, Any]


def plan(spec: StudySpec) -> list[PlannedTrial]:
    """The planned trials, in launch order: each grid point / [[points]] entry, `repeats` times."""
    return [
        PlannedTrial(config=index, repeat=repeat, params=params)
        for index, params in enumerate(spec.planned_trials())
        for repeat in range(spec.repeats)
    ]


def sampled_configs(spec: StudySpec) -> int:
    """How many configurations the sampler suggests beyond the planned ones (tpe/random only)."""
    if spec.sampler == "grid":
        return 0
    return spec.n_trials - len(spec.planned_trials())


def distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    """The Optuna distribution of each varied field; for a points-only study, the points' values."""
    if spec.space:
        return {key: _distribution(dim) for key, dim in spec.space.items()}
    choices: dict[str, list[Any]] = {}
    for point in spec.points:
        for key, value in point.items():
            if value not in choices.setdefault(key, []):
                choices[key].append(value)
    return {key: CategoricalDistribution(values) for key, values in choices.items()}


def _distribution(dim: Dimension) -> BaseDistribution:
    if isinstance(dim, Categorical):
        return CategoricalDistribution(dim.choices)
    if isinstance(dim, FloatRange):
        return FloatDistribution(dim.low, dim.high, log=dim.log)
    return IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step or 1)


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """TPE or random for a search; a grid's trials are all planned, so its sampler is never asked."""
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler()
    return optuna.samplers.RandomSampler()


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The study's pruner; unset settings keep Optuna's defaults (median: 5 finished trials first)."""
    warmup = spec.pruner_warmup_epochs or 0
    if spec.pruner == "median":
        startup = 5 if spec.pruner_startup_trials is None else spec.pruner_startup_trials
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if spec.pruner == "hyperband":
        # every epoch count is a resource; a trial always runs `warmup` epochs (at least one)
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), max_resource="auto")
    return optuna.pruners.NopPruner()


def dry_run(
    spec: StudySpec, *, study: optuna.Study | None = None, out: Printer = _print
) -> list[PlannedTrial]:
    """Print what `sweep launch` would do next, and return the trials it would submit; writes nothing.

    Args:
        spec: The validated study.
        study: The stored study when it exists: then only what is left is listed (running trials that
            would be re-attached, planned trials not yet complete, pruned or failed for good).
        out: Where the lines go.
    """
    trials = study.get_trials(deepcopy=False) if study is not None else []
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            job = trial.user_attrs.get("job_id", "none yet")
            out(f"trial {trial.number} running  job {job}  {params_text(trial.params)}: would be re-attached")
    waiting = [t for t in trials if t.state == TrialState.WAITING]  # enqueued: params are the fixed ones
    todo = [
        PlannedTrial(
            config=int(t.user_attrs.get("config", -1)),
            repeat=int(t.user_attrs.get("repeat", 0)),
            params=dict(t.system_attrs.get("fixed_params", {})),
        )
        for t in waiting
    ] + missing_trials(spec, trials)
    for item in todo:
        out(f"config {item.config} repeat {item.repeat}  {params_text(item.params)}")
    used = {_key(t)[0] for t in trials if _is_sampled(t, spec)}
    extra = max(0, sampled_configs(spec) - len(used))
    if extra:
        out(f"then {extra} configurations x {spec.repeats} repeats suggested by the {spec.sampler} sampler")
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    already = f", {done} already finished" if trials else ""
    out(
        f"{spec.name}: {len(todo)} planned trials, {extra * spec.repeats} sampled to submit{already}; "
        "nothing submitted"
    )
    return todo


def missing_trials(spec: StudySpec, trials: list[FrozenTrial]) -> list[PlannedTrial]:
    """Each planned (config, repeat), and each repeat of a sampled config, that no trial has taken yet.

    A trial WAITING, RUNNING, COMPLETE or PRUNED takes its (config, repeat); a FAILed one does not, so a
    planned configuration that failed is planned again.
    """
    taken = {_key(t) for t in trials if t.state in TAKEN_STATES}
    wanted = plan(spec)
    sampled = {t.user_attrs["config"]: t.params for t in trials if _key(t)[1] == 0 and _is_sampled(t, spec)}
    wanted += [PlannedTrial(c, r, params) for c, params in sampled.items() for r in range(1, spec.repeats)]
    return [item for item in wanted if (item.config, item.repeat) not in taken]


# -- the launcher -----------------------------------------------------------------------------------------


@dataclass
class Running:
    """A trial whose job the launcher watches."""

    trial: optuna.Trial
    job: Job
    config: TrainConfig
    run_dir: Path
    reported: int = 0  # epochs already reported to the trial


@dataclass
class Summary:
    """How a launch ended: trial counts by state and the best trial."""

    study: str
    states: Counter[str] = field(default_factory=Counter)
    best: FrozenTrial | None = None


class Launcher:
    """Runs one study; `run()` returns when every trial is finished."""

    def __init__(
        self,
        spec: StudySpec,
        study: optuna.Study,
        executor: Executor,
        *,
        results_dir: Path,
        parallel: int = 1,
        poll_s: float = POLL_SECONDS,
        out: Printer = _print,
        job: JobFn | None = None,
    ) -> None:
        if parallel < 1:
            raise SweepError(f"--parallel must be 1 or more, got {parallel}")
        self.spec = spec
        self.study = study
        self.executor = executor
        self.runs_dir = Path(results_dir) / "runs" / spec.name
        self.parallel = parallel
        self.poll_s = poll_s
        self.out = out
        self.job: JobFn = job or TrainJob()
        self.distributions = distributions(spec)
        self.running: dict[int, Running] = {}
        self.pending: deque[PlannedTrial] = deque()  # planned trials not yet started (see `ask`)
        self.waiting = 0  # WAITING trials in the study's queue, known to this launcher
        self.starting: int | None = None  # the trial whose job `submit` is starting (a debug job runs there)

    def run(self) -> Summary:
        self.reconcile()
        stamped = time.monotonic()
        first_pause = min(FIRST_POLL_SECONDS, self.poll_s)
        pause = first_pause
        while True:
            self.fill()
            if not self.running:
                break
            # Poll at once: a job may be done already (the debug executor's always is), and a finished
            # trial's slot is refilled without waiting. When nothing happened, sleep, backing off from a
            # short pause to poll_s: a job that ends soon after it starts (a crash, a tiny job) is seen
            # at once, and a long one costs one metrics read per poll_s. A local job's end wakes the
            # sleep at once (wait_for_end).
            if any([self.poll(self.running[number]) for number in list(self.running)]):
                pause = first_pause
            else:
                wait_for_end([item.job for item in self.running.values()], pause)
                pause = min(2 * pause, self.poll_s)
            if time.monotonic() - stamped >= HEARTBEAT_SECONDS:
                self.heartbeat()
                stamped = time.monotonic()
        return self.summary()

    def interrupted(self) -> str:
        """The line for a launch stopped by Ctrl-C: the trials it watched, and what to do next."""
        watched = [f"trial {n} (job {item.job.job_id})" for n, item in sorted(self.running.items())]
        if self.starting is not None:
            started = "ran in this process" if self.executor.name == "debug" else "was being submitted"
            watched.append(f"trial {self.starting} (its job {started})")
        if not watched:
            return f"{self.spec.name}: launch interrupted; no trial was running"
        jobs, count = ", ".join(watched), len(watched)
        return (
            f"{self.spec.name}: launch interrupted with {count} trial{'s' if count != 1 else ''} running: "
            f"{jobs}. `sweep launch` again re-attaches live jobs and resumes stopped ones from their "
            "checkpoints; `sweep cancel` stops them"
        )

    def heartbeat(self) -> None:
        """Tell launchers on other hosts that this one still watches its running trials."""
        now = time.time()
        for item in self.running.values():
            item.trial.set_user_attr("heartbeat", now)

    # -- reconcile --------------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """List the planned trials still to run and take over the RUNNING trials a previous launcher left."""
        trials = self.study.get_trials(deepcopy=False)
        self.pending = deque(missing_trials(self.spec, trials))
        self.waiting = sum(t.state == TrialState.WAITING for t in trials)
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = frozen.user_attrs.get("launcher")
            if owner is not None and _launcher_alive(owner, _heartbeat(frozen)):
                self.out(f"trial {frozen.number} is watched by the running launcher {owner}; leaving it")
                continue
            trial = optuna.Trial(self.study, frozen._trial_id)
            trial.set_user_attr("launcher", LAUNCHER_ID)
            trial.set_user_attr("heartbeat", time.time())
            job_id = frozen.user_attrs.get("job_id")
            if "run_dir" in frozen.user_attrs:  # a job whose launcher died before storing its id
                orphan = self.executor.orphan(Path(frozen.user_attrs["run_dir"]), after=job_id)
                if orphan is not None:
                    job_id = orphan
                    trial.set_user_attr("job_id", orphan)
            if job_id is None:  # the launcher stopped before its job id was stored (or a debug job ran)
                self.submit(trial, reported=max(frozen.intermediate_values, default=0))
                continue
            kind = frozen.user_attrs.get("executor", self.executor.name)
            executor = (
                self.executor if kind == self.executor.name else make_executor(kind, self.spec.resources)
            )
            run_dir = Path(frozen.user_attrs["run_dir"])
            job = executor.attach(str(job_id), run_dir)
            config = self.spec.train_config(trial.params, repeat=frozen.user_attrs.get("repeat", 0))
            reported = max(frozen.intermediate_values, default=0)
            self.running[trial.number] = Running(trial, job, config, run_dir, reported)
            self.out(f"trial {trial.number} re-attached  job {job_id} ({job.describe()})")

    def _enqueue_attrs(self, config: int, repeat: int) -> dict[str, Any]:
        # Written with the trial in one transaction: `submit` then need not write them one by one.
        return {"config": config, "repeat": repeat, "executor": self.executor.name, "launcher": LAUNCHER_ID}

    # -- ask and submit ---------------------------------------------------------------------------------

    def fill(self) -> None:
        """Ask and submit trials until `parallel` run or none is left to ask."""
        while len(self.running) < self.parallel:
            trial = self.ask()
            if trial is None:
                return
            self.submit(trial)

    def ask(self) -> optuna.Trial | None:
        """The next queued or planned trial, else a new sampled configuration (tpe/random, within n_trials).

        `self.waiting` counts the WAITING trials this launcher knows of (left by an earlier launcher, or
        the other seeds of a sampled configuration) so that no ask needs a query to find them. A planned
        trial is not queued at all: `start_planned` creates it running.
        """
        if self.waiting:
            self.waiting -= 1
            trial = self.study.ask(self.distributions)
            if "config" in trial.user_attrs:
                return trial
            # Another launcher sharing the study emptied the queue first: Optuna made a fresh trial.
            self.waiting = 0
            self.fail(trial, "another launcher took this trial's queued configuration; nothing to run")
            return self.ask()
        if self.pending:
            # Another launcher on this study may have started some of them since `reconcile`: a read
            # of the trials that changed since the last one (Optuna's cached storage) skips those.
            taken = {_key(t) for t in self.study.get_trials(deepcopy=False) if t.state in TAKEN_STATES}
            while self.pending and (self.pending[0].config, self.pending[0].repeat) in taken:
                self.pending.popleft()
            if self.pending:
                return self.start_planned(self.pending.popleft())
        next_config = self._next_sampled_config()
        if next_config is None:
            return None
        trial = self.study.ask(self.distributions)
        trial.set_user_attr("config", next_config)
        trial.set_user_attr("repeat", 0)
        for repeat in range(1, self.spec.repeats):  # the other seeds of this configuration run next
            self.study.enqueue_trial(trial.params, user_attrs=self._enqueue_attrs(next_config, repeat))
            self.waiting += 1
        return trial

    def start_planned(self, item: PlannedTrial) -> optuna.Trial:
        """The planned trial `item`, created RUNNING with its params and attributes in one transaction.

        What `enqueue_trial` then `ask` store, in one commit instead of one per step (the enqueue, the
        pop from the queue, which reads all of it, and one per param): the same params, distributions
        and user attributes, the trial started now. A launcher that stops before `submit` leaves it
        RUNNING with no job id, and the next launch submits it (`reconcile`).
        """
        template = FrozenTrial(
            number=-1,  # Optuna numbers the trial in the creating transaction
            trial_id=-1,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=datetime.now(),  # naive local time, as Optuna's own ask stores
            datetime_complete=None,
            params=dict(item.params),
            distributions={key: self.distributions[key] for key in item.params},
            user_attrs=self._enqueue_attrs(item.config, item.repeat),
            system_attrs={},
            intermediate_values={},
        )
        # Study._storage and _study_id: the storage API (create_new_trial with a template, as
        # Study.add_trial calls it) is public; Study has no public way to it that returns the trial.
        trial_id = self.study._storage.create_new_trial(self.study._study_id, template_trial=template)
        return optuna.Trial(self.study, trial_id)

    def _next_sampled_config(self) -> int | None:
        if self.spec.sampler == "grid":
            return None
        used = [_key(t)[0] for t in self.study.get_trials(deepcopy=False)]
        next_config = max([len(self.spec.planned_trials()) - 1, *[c for c in used if c is not None]]) + 1
        return next_config if next_config < self.spec.n_trials else None

    def submit(self, trial: optuna.Trial, *, reported: int = 0) -> None:
        """Write the trial's config.json into its run dir and start its job (again, after a lost job).

        A job started again on the same run dir resumes from its checkpoint.pt.
        """
        attrs = trial.user_attrs
        config = self.spec.train_config(trial.params, repeat=attrs.get("repeat", 0))
        run_dir = Path(attrs.get("run_dir") or self.runs_dir / str(trial.number))
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(RunPaths(run_dir).config, config.to_json())
        # One SQLite commit per attribute, so only what changed is written (an enqueued trial carries
        # executor and launcher already; a first submission's heartbeat is its start time).
        if attrs.get("run_dir") != str(run_dir):
            trial.set_user_attr("run_dir", str(run_dir))
        for key, value in (("executor", self.executor.name), ("launcher", LAUNCHER_ID)):
            if attrs.get(key) != value:
                trial.set_user_attr(key, value)
        if attrs.get("submissions"):
            trial.set_user_attr("heartbeat", time.time())
        trial.set_user_attr("submissions", attrs.get("submissions", 0) + 1)
        self.starting = trial.number  # kept if submit raises: `interrupted` names the trial
        job = self.executor.submit(self.job, config.to_dict(), run_dir)
        self.starting = None
        trial.set_user_attr("job_id", job.job_id)
        self.running[trial.number] = Running(trial, job, config, run_dir, reported)
        again = " again" if attrs.get("submissions") else ""
        self.out(f"trial {trial.number} submitted{again}  job {job.job_id}  {params_text(trial.params)}")

    # -- poll, report/prune, tell -----------------------------------------------------------------------

    def poll(self, item: Running) -> bool:
        """Report the trial's new epochs, prune it if the pruner says so, tell it once its job is done.

        Returns whether anything happened (a new epoch, a prune, an end).
        """
        done = item.job.done()  # before reading: every epoch of a finished job is then in the file
        records = read_metrics(RunPaths(item.run_dir).metrics)
        new = records[item.reported :]
        for record in new:
            self.report(item, record)
            if record.epoch < item.config.epochs and item.trial.should_prune():
                self.prune(item, record)
                return True
        if done:
            self.finish(item, records)
        return done or bool(new)

    def report(self, item: Running, record: EpochMetrics) -> None:
        value = getattr(record, self.spec.metric)
        item.trial.report(value, record.epoch)
        item.reported = record.epoch
        epoch = f"{record.epoch}/{item.config.epochs}"
        self.out(f"trial {item.trial.number} epoch {epoch}  {self.spec.metric} {value:.4f}")

    def prune(self, item: Running, record: EpochMetrics) -> None:
        item.job.cancel()
        self.study.tell(item.trial, state=TrialState.PRUNED)
        del self.running[item.trial.number]
        self.out(
            f"trial {item.trial.number} pruned at epoch {record.epoch}/{item.config.epochs}; job stopped"
        )

    def finish(self, item: Running, records: list[EpochMetrics]) -> None:
        outcome = item.job.outcome()
        number = item.trial.number
        if outcome.status == "lost" and item.trial.user_attrs.get("submissions", 1) < MAX_SUBMISSIONS:
            del self.running[number]
            self.out(f"trial {number} job {item.job.job_id} is gone without a result; resuming it")
            self.submit(item.trial, reported=item.reported)
            return
        del self.running[number]
        if outcome.status == "success" and records:
            value = best_value(records, self.spec.metric, self.spec.direction)
            self.study.tell(item.trial, value)
            self.out(
                f"trial {number} complete  {self.spec.metric} {value:.4f} (best of {len(records)} epochs)"
            )
            return
        reason = outcome.detail or "the job succeeded but wrote no metrics"
        if outcome.status == "lost":
            reason = f"{reason} ({MAX_SUBMISSIONS} submissions; giving up)"
        self.fail(item.trial, reason)

    def fail(self, trial: optuna.Trial, reason: str) -> None:
        number = trial.number
        trial.set_user_attr("traceback", reason)
        self.study.tell(trial, state=TrialState.FAIL)
        last = reason.strip().splitlines()[-1] if reason.strip() else "unknown"
        self.out(f"trial {number} failed: {last} (full text in user attribute 'traceback')")

    def summary(self) -> Summary:
        trials = self.study.get_trials(deepcopy=False)
        summary = Summary(study=self.spec.name, states=Counter(t.state.name for t in trials))
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        if complete:
            pick = max if self.spec.direction == "maximize" else min
            summary.best = pick(complete, key=lambda t: t.value if t.value is not None else math.nan)
        return summary


def best_value(records: list[EpochMetrics], metric: str, direction: str) -> float:
    """The trial's value: the best epoch's metric (highest for maximize, lowest for minimize)."""
    values = [getattr(record, metric) for record in records]
    return max(values) if direction == "maximize" else min(values)


def launch(
    spec: StudySpec,
    *,
    results_dir: Path,
    storage_url: str | None = None,
    executor: str = "auto",
    parallel: int = 1,
    poll_s: float = POLL_SECONDS,
    pruner: optuna.pruners.BasePruner | None = None,
    out: Printer = _print,
    job: JobFn | None = None,
) -> Summary:
    """Run (or continue) the study `spec` to the end and print one line per trial event and a summary.

    Args:
        spec: The validated study.
        results_dir: Holds the default storage (sweep.db) and the run dirs (runs/<study>/<trial>/).
        storage_url: Any SQLAlchemy URL; default `sqlite:///<results_dir>/sweep.db`.
        executor: auto | slurm | local | debug.
        parallel: Jobs running at once.
        poll_s: Seconds between reads of the running trials' metrics files.
        pruner: Replaces the study file's pruner (for tests and the Python API).
        out: Where progress lines go.
        job: What each trial's job calls, `job(config_dict, run_dir)`; default `TrainJob()` (the trainer).
            Benchmarks pass a no-op here to measure the launcher alone.

    Raises:
        SweepError: Unreachable storage, an unknown executor, a study stored with another direction.
    """
    job_executor = make_executor(executor, spec.resources)
    # A launch that cannot write its run dirs must fail before it touches the storage, and one whose
    # storage is unreachable before it creates any folder: check first, create after.
    runs_dir = Path(results_dir) / "runs" / spec.name
    _check_creatable(runs_dir, str(results_dir))
    if storage_url is None:
        _make_dir(runs_dir, str(results_dir))  # the default storage lives in the results folder
        storage_url = storage_mod.default_url(Path(results_dir))
    storage = storage_mod.open_storage(storage_url, create=True)
    _make_dir(runs_dir, str(results_dir))
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
        check_same_plan(spec, study, url=storage_url)
        attrs = study.user_attrs  # what the commands that read a study without its file use
        if "metric" not in attrs:
            study.set_user_attr("metric", spec.metric)
        if storage_mod.PLAN_ATTR not in attrs:
            study.set_user_attr(storage_mod.PLAN_ATTR, plan_fingerprint(spec))
        if attrs.get(storage_mod.GPUS_ATTR) != spec.resources.gpus:
            study.set_user_attr(storage_mod.GPUS_ATTR, spec.resources.gpus)
    launcher = Launcher(
        spec,
        study,
        job_executor,
        results_dir=Path(results_dir),
        parallel=parallel,
        poll_s=poll_s,
        out=out,
        job=job,
    )
    with storage_mod.storage_errors(storage_url):
        try:
            summary = launcher.run()
        except KeyboardInterrupt:  # Ctrl-C: say what is left and how to go on; the CLI exits 130
            out(launcher.interrupted())
            raise
    out(summary_line(summary, spec.metric))
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


def plan_fingerprint(spec: StudySpec) -> dict[str, Any]:
    """What fixes which trial is which configuration, stored with the study at its first launch.

    Trials know their configuration by its position (`config`), so the sampler, [space], [[points]] and
    the [train] fields that change results must stay as they were. n_trials, repeats, the pruner and
    [resources] may change between launches; so may the [train] fields a resumed run may change.
    """
    data = spec.to_dict()
    train = {key: value for key, value in data["train"].items() if key not in RESUMABLE_CHANGES}
    plan = {"sampler": spec.sampler, "space": data["space"], "points": data["points"], "train": train}
    return dict(json.loads(json.dumps(plan)))  # as the storage gives it back: lists, not tuples


def check_same_plan(spec: StudySpec, study: optuna.Study, *, url: str) -> None:
    """Raise a SweepError when the stored study was launched from a study file that planned otherwise."""
    stored = study.user_attrs.get(storage_mod.PLAN_ATTR)
    if stored is None:  # not launched yet, or by a sweep that stored no plan: its trials tell
        _check_trials_match(spec, study, url=url)
        return
    now = plan_fingerprint(spec)
    changed = [
        f"[train] {key} ({stored['train'].get(key)!r} there, {now['train'].get(key)!r} now)"
        for key in sorted(set(stored["train"]) | set(now["train"]))
        if stored["train"].get(key) != now["train"].get(key)
    ]
    changed += [f"[{key}]" if key != "sampler" else "sampler" for key in ("sampler", "space", "points")
                if stored.get(key) != now[key]]  # fmt: skip
    if changed:
        raise SweepError(
            f"storage '{url}': study '{spec.name}' was launched from a study file with another "
            f"{', '.join(changed)}; its trials are matched to configurations by position, so results "
            "would mix. Restore those settings, or give the changed study a new [study] name"
        )


def _check_trials_match(spec: StudySpec, study: optuna.Study, *, url: str) -> None:
    """Raise a SweepError when a stored trial's params or distributions are not the study file's."""
    planned, now = spec.planned_trials(), distributions(spec)
    for trial in study.get_trials(deepcopy=False):
        config = trial.user_attrs.get("config")
        if isinstance(config, int) and config < len(planned) and trial.params != planned[config]:
            problem = (
                f"trial {trial.number} ran configuration {config} as {params_text(trial.params)}, "
                f"the study file now makes it {params_text(planned[config]) or 'the [train] defaults'}"
            )
        elif any(now.get(key) != dist for key, dist in trial.distributions.items()):
            problem = f"trial {trial.number} searched another [space] ({', '.join(trial.distributions)})"
        else:
            continue
        raise SweepError(
            f"storage '{url}': study '{spec.name}': {problem}; its trials are matched to configurations "
            "by position, so results would mix. Restore the study file, or give the changed study a new "
            "[study] name"
        )


def summary_line(summary: Summary, metric: str) -> str:
    counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(summary.states.items()))
    line = f"{summary.study}: {sum(summary.states.values())} trials ({counts or 'none'})"
    if summary.best is not None and summary.best.value is not None:
        best = summary.best
        line += f"; best trial {best.number} {metric} {best.value:.4f} {params_text(best.params)}".rstrip()
    return line


# -- helpers ----------------------------------------------------------------------------------------------


def _key(trial: FrozenTrial) -> tuple[int | None, int]:
    return trial.user_attrs.get("config"), trial.user_attrs.get("repeat", 0)


def _is_sampled(trial: FrozenTrial, spec: StudySpec) -> bool:
    config = trial.user_attrs.get("config")
    return config is not None and config >= len(spec.planned_trials())


def _heartbeat(trial: FrozenTrial) -> float | None:
    """When the trial's launcher last said it was alive: its stamp, else the trial's start."""
    stamp = trial.user_attrs.get("heartbeat")
    if stamp is not None:
        return float(stamp)
    return trial.datetime_start.timestamp() if trial.datetime_start is not None else None


def _launcher_alive(owner: str, heartbeat: float | None) -> bool:
    """Whether the launcher `host:pid` that stamped a trial at `heartbeat` is another live process.

    On this host the process table says; a launcher elsewhere counts as alive while its heartbeat is
    fresh (hosts sharing a study need roughly synchronised clocks, as any NTP-run cluster has).
    """
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return heartbeat is not None and time.time() - heartbeat < HEARTBEAT_STALE_S
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
