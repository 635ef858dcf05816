"""The launcher loop: runs a study's trials through an executor; the only writer of the trials it watches.

The loop is a few named steps:

    reconcile  at start: list the planned trials not yet in the study; re-attach RUNNING trials
               whose launcher is gone and whose job is alive, resume those whose job is gone (same
               trial, same run dir); again every `Intervals.scan_s` for trials whose launcher died since
    ask        the next trial: a queued one, a planned one (claimed, then created running), else one
               the tpe/random sampler suggests (its configuration index claimed first)
    submit     write the trial's config.json and start its job; poll: read each one's metrics.jsonl
    report     `trial.report(metric, epoch)` for each new epoch; prune: cancel the job, tell PRUNED
    tell       a finished job: its best metric (COMPLETE), or FAIL with the traceback kept
    rungs      synchronous halving: a job stops at its rung, the trial pauses there; a closed rung's best
               third are submitted again to the next rung, the rest told PRUNED (`.rungs`)

What is left to run: `sweep.study.plan`; the next trial: `.source`; who holds which run: `sweep.store.claims`;
telling a trial's end: `.endings`.
"""

import math
import time
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep._compat import SharedDistributions, rdb_storage, study_id
from sweep.errors import Printer, SweepError, print_line
from sweep.executors import Executor, JobFn, attach, wait_for_end
from sweep.executors.base import SubmitHeld
from sweep.executors.job import TrainJob
from sweep.executors.program import ProgramJob
from sweep.launcher.budget import Budget
from sweep.launcher.endings import Endings
from sweep.launcher.failures import Failures
from sweep.launcher.held import Held
from sweep.launcher.interrupts import Interrupts
from sweep.launcher.intervals import DEFAULT_INTERVALS, Intervals
from sweep.launcher.metric_check import MetricWatch
from sweep.launcher.rung_words import answer, read_pause, say, told_rungs, with_rungs
from sweep.launcher.rungs import Rungs, with_stop
from sweep.launcher.source import TrialSource
from sweep.launcher.stall import StallRule, watch_epochs
from sweep.launcher.takeover import TakeOver
from sweep.launcher.watched import Watched
from sweep.store import owners, records
from sweep.store import storage as storage_mod
from sweep.store.claims import Claims, Stamper, create_tables
from sweep.store.records import TrialRecord
from sweep.study.plan import distributions
from sweep.study.spec import StudySpec, best_logged, params_text
from trainer.config import TrainConfig
from trainer.files import write_atomic
from trainer.metrics import Epoch
from trainer.paths import RunPaths

READ_EVERY_S = 0.5  # how often running trials' metrics files are read
FIRST_READ_SECONDS = 0.05  # the first sleep after something happened; doubled up to READ_EVERY_S
MAX_SUBMISSIONS = 3  # a trial whose job vanishes (killed, out of memory) this often is FAILed


class Launcher:
    """Runs one study; `run()` returns when every trial is finished.

    About 345 lines, over the project's 250 for a class, on purpose: its steps (reconcile, fill, ask,
    submit, poll, report, prune, finish) all read and change the same running set, pending plan and
    study, and split over classes they would hand those three around at every call.
    """

    def __init__(
        self,
        spec: StudySpec,
        study: optuna.Study,
        executor: Executor,
        *,
        results_dir: Path,
        parallel: int = 1,
        read_every_s: float = READ_EVERY_S,
        out: Printer = print_line,
        job: JobFn | None = None,
        predecessors: frozenset[str] = frozenset(),
        budget: float | None = None,
        intervals: Intervals = DEFAULT_INTERVALS,
    ) -> None:
        """`predecessors`: launcher ids that were this launcher before it restarted (a requeued detached
        launcher): their claims are taken back at once, not after their stamps age. `budget`: GPU-hours
        past which no new trial starts (`sweep.launcher.budget`); `intervals`: its own timings."""
        if parallel < 1:
            raise SweepError(f"--parallel must be 1 or more, got {parallel}")
        self.spec = spec
        self.study = study
        self.executor = executor
        self.runs_dir = storage_mod.runs_dir(results_dir, spec.name)
        self.parallel = parallel
        self.read_every_s = read_every_s
        self.out = out
        self.job: JobFn = job or (ProgramJob(spec.program, spec.metric) if spec.program else TrainJob())
        self.distributions = distributions(spec)
        self.running: dict[int, Watched] = {}
        self.intervals = intervals
        self.held = Held(spec.name, out, retry_s=intervals.held_retry_s)  # refused by a limit: tried later
        self.shared = SharedDistributions()  # keeps memory flat: one copy of each distribution cached
        self.starting: int | None = None  # the trial whose job `submit` is starting (a debug job runs there)
        self.id = owners.launcher_id()  # stored as each watched trial's `launcher`
        self.failures = Failures(spec.name, spec.max_failures)  # a launch with any exits 1
        self.metric_watch = MetricWatch(spec.metric, spec.name, spec.source)
        self.budget = None if budget is None else Budget(budget, spec.resources.trial_gpus, spec.name, out)
        self.rungs = Rungs(spec, study, out) if spec.pruner == "synchronous_halving" else None
        self.interrupts = Interrupts()
        storage = rdb_storage(study)
        create_tables(storage)
        self.claims = Claims(storage, study_id(study), self.id)
        self.peers = TakeOver(study, self.claims, executor, out, predecessors)
        self.source = TrialSource(
            spec, study, self.claims, self.peers.gone, executor=executor.name, launcher=self.id
        )
        self.ends = Endings(study, self.source, self.failures, spec.name, out)  # tells trials' ends

    def run(self) -> None:
        """Run until every trial is finished (or too many fail in a row: StudyStopped).

        A separate thread stamps this launcher's claims every HEARTBEAT_SECONDS, so a debug job that
        trains in this thread for hours does not pass for a dead launcher.
        """
        with Stamper(self.claims, owners.HEARTBEAT_SECONDS), self.interrupts.watching():
            self._run()

    def _run(self) -> None:
        self.reconcile()
        scanned = time.monotonic()
        first_pause = min(FIRST_READ_SECONDS, self.read_every_s)
        pause = first_pause
        while True:
            self.interrupts.check()  # a Ctrl-C or SIGTERM a finalizer swallowed is acted on here
            self.fill()
            if self.rungs is not None and self.rungs.close(self.ends.tell):
                continue  # a rung closed: its promoted trials are submitted first
            if not self.running and not self.held and not self.others_running():
                break
            # Poll at once: a job may be done already (a debug one always is), and a finished trial's
            # slot is refilled without waiting. When nothing happened, sleep, backing off from a short
            # pause to read_every_s: a short job's end is seen at once, a long one costs one metrics
            # read per read_every_s. A local job's end wakes the sleep at once (wait_for_end).
            if any([self.poll(self.running[number]) for number in list(self.running)]):
                pause = first_pause
            else:
                wait_for_end([item.job for item in self.running.values()], pause)
                pause = min(2 * pause, read_pause(self.running.values(), self.read_every_s))
            if time.monotonic() - scanned >= self.intervals.scan_s:
                self.scan()
                scanned = time.monotonic()

    def scan(self) -> None:
        """Leave trials another launcher took over; take over RUNNING trials whose launcher died."""
        self.shared.share(self.study)
        for number in self.peers.lost({number: item.key for number, item in self.running.items()}):
            del self.running[number]
        starting = set() if self.starting is None else {self.starting}
        for frozen in self.peers.unwatched(set(self.running) | starting | self.jobless()):
            self.take_over(frozen)
        if self.rungs is not None:
            self.rungs.changed = True  # another launcher's trials may have reached a rung

    def jobless(self) -> set[int]:
        """The trials this launcher holds with no job: held by a submission limit, paused at a rung."""
        return self.held.numbers() | (self.rungs.numbers() if self.rungs is not None else set())

    def others_running(self) -> bool:
        """Whether RUNNING trials other launchers watch remain (waited for; taken over if theirs dies)."""
        others = self.peers.unwatched(set(self.running) | self.jobless())
        if not others:
            return False
        self.peers.say_waiting(self.spec.name, len(others))
        time.sleep(self.intervals.scan_s)
        self.scan()
        self.source.ended()  # others' trials may have ended the search
        return True

    # -- reconcile --------------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """List the planned trials still to run and take over the RUNNING trials a previous launcher left."""
        trials = self.study.get_trials(deepcopy=False)
        self.source.reconcile(trials)
        self.metric_watch.seen_in(trials)
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.take_over(frozen)

    def take_over(self, frozen: FrozenTrial) -> None:
        """Watch a RUNNING trial whose launcher is gone: re-attach its live job, or submit it again."""
        taken = self.peers.take(frozen)
        if taken is None:
            return
        if taken.job_id is None or taken.run_dir is None:  # stopped before its job id was stored
            self.submit(taken.trial, reported=taken.reported)
            return
        job = (
            self.executor.attach(taken.job_id, taken.run_dir)
            if taken.kind == self.executor.name
            else attach(taken.kind, taken.job_id, taken.run_dir)
        )
        values = self.spec.trial_values(taken.trial.params, repeat=taken.repeat)
        rungs = told_rungs(self.spec, values, taken.kind)  # the word its program may wait for
        item = Watched(taken.trial, job, values, taken.run_dir, taken.reported, rungs=rungs)
        if self.rungs is not None and self.rungs.adopt(item):  # it waits at a rung: no job to watch
            return
        self.running[taken.trial.number] = item
        self.out(f"trial {taken.trial.number} re-attached  job {taken.job_id} ({job.describe()})")

    # -- ask and submit ---------------------------------------------------------------------------------

    def fill(self) -> None:
        """Ask and submit trials until `parallel` run, none is left to ask or the budget is reached."""
        while len(self.running) < self.parallel:
            held = self.held.due(len(self.running))
            if held is not None:
                self.submit(held.trial, reported=held.reported, released=True)
                continue
            ready = self.rungs.next_ready() if self.rungs is not None else None
            if ready is not None:  # promoted at a rung: resumed from its checkpoint, not a new start
                self.submit(ready.trial, reported=ready.reported, counted=False)
                continue
            if self.held:  # a submission limit: a new trial would be refused too
                return
            if self.budget is not None and self.budget.stops(self.study):
                return
            trial = self.ask()
            if trial is None:
                return
            self.submit(trial)

    def ask(self) -> optuna.Trial | None:
        """The next trial to run, created (and its run claimed) now; None when none is left."""
        return self.source.next()

    def submit(
        self, trial: optuna.Trial, *, reported: int = 0, counted: bool = True, released: bool = False
    ) -> None:
        """Write the trial's config.json into its run dir and start its job (again, after a lost job).

        A job started again on the same run dir resumes from its checkpoint.pt. `counted`: the start
        counts toward MAX_SUBMISSIONS (not after a job someone killed by hand). A start a submission
        limit refuses is held (`sweep.launcher.held`), uncounted; `released`: this is its next try.
        """
        record = TrialRecord.of(trial)
        values = self.spec.trial_values(trial.params, repeat=record.repeat)
        run_dir = record.run_dir or self.runs_dir / str(trial.number)
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.spec.program is None:  # a program's job writes its params.json itself, at every start
            write_atomic(RunPaths(run_dir).config, TrainConfig.from_dict(values).to_json())
        # One storage commit per field, so only what changed is written (a planned trial carries
        # executor and launcher already).
        records.write(
            trial,
            run_dir=run_dir if record.run_dir != run_dir else None,
            executor=self.executor.name if record.executor != self.executor.name else None,
            launcher=self.id if record.launcher != self.id else None,
            submissions=record.submissions + 1 if counted else None,
        )
        stop = self.rungs.stop(trial, values.get("epochs")) if self.rungs is not None else None
        rungs = told_rungs(self.spec, values, self.executor.name)  # an asynchronous pruner's
        self.starting = trial.number  # kept if submit raises: `interrupted_line` names the trial
        try:
            job = self.executor.submit(with_rungs(with_stop(self.job, stop), rungs), values, run_dir)
        except SubmitHeld as limit:  # a refusal is no submission of the trial
            self.starting = None
            records.write(trial, submissions=record.submissions if counted else None)
            self.held.hold(trial, reported, limit, len(self.running))
            return
        self.starting = None
        if released:  # said once the job is taken
            self.held.released(trial)
        records.write(trial, job_id=job.job_id)
        self.running[trial.number] = Watched(trial, job, values, run_dir, reported, stop=stop, rungs=rungs)
        again = " again" if record.submissions else ""
        self.out(f"trial {trial.number} submitted{again}  job {job.job_id}  {params_text(trial.params)}")

    # -- poll, report/prune, tell -----------------------------------------------------------------------

    def poll(self, item: Watched) -> bool:
        """Report the trial's new epochs, prune it if the pruner says so, tell it once its job is done.

        Returns whether anything happened (a new epoch, a prune, an end).
        """
        done = item.job.done()  # before reading: every epoch of a finished job is then in the file
        if not done and not item.waited:
            item.say_waiting(self.out)
        history = item.history()  # parsed again only when the file changed
        new = [record for record in history if record["epoch"] > item.reported]
        rule = StallRule.of(self.spec, self.intervals.stall_min_s)
        stall = watch_epochs(item.clock, item.trial, len(new), done, self.out, rule)
        if stall is not None:  # [study] stall_action requeue or fail
            self.stop_stalled(item, stall)
            return True
        for line in item.requeue_lines():
            self.out(line)
        for record in new:
            epoch = int(record["epoch"])
            value = record.get(self.spec.metric)
            if isinstance(value, float) and not math.isfinite(value):
                self.diverge(item, epoch, value)
                return True
            reported = self.report(item, record)
            last = item.epochs is not None and epoch >= item.epochs
            if reported and not last and not done and item.trial.should_prune():
                self.prune(item, epoch)
                return True
        answer(item, history, done)  # go on from a rung epoch its program waits at
        if self.rungs is not None and self.rungs.reached(item, done):
            del self.running[item.trial.number]  # paused at a rung: its job ended or was stopped
            return True
        if done:
            self.finish(item, history)
        return done or bool(new)

    def report(self, item: Watched, record: Epoch) -> bool:
        """Report the epoch's metric to the trial; False when the epoch logged no value of it."""
        epoch, value = int(record["epoch"]), record.get(self.spec.metric)
        item.reported = epoch
        number, metric = item.trial.number, self.spec.metric
        note = self.metric_watch.note(record)  # counts the metric as logged when the epoch has it
        if value is None:
            self.out(f"trial {number} epoch {item.of_epochs(epoch)}  {metric} no value{note}")
            return False
        item.trial.report(value, epoch)
        self.out(f"trial {number} epoch {item.of_epochs(epoch)}  {metric} {value:.4f}")
        return True

    def prune(self, item: Watched, epoch: int) -> None:
        say(item, epoch, go=False)  # a program waiting at the rung stops at once, its job stopped too
        item.job.stop_soon()
        del self.running[item.trial.number]
        if self.ends.tell(item.trial, state=TrialState.PRUNED):
            self.out(f"trial {item.trial.number} pruned at epoch {item.of_epochs(epoch)}; job stopped")

    def stop_stalled(self, item: Watched, said: str) -> None:
        """Stop a stalled trial's job; submit it again (counted), or fail it ("fail", no submission left)."""
        item.job.cancel()
        del self.running[item.trial.number]
        action = self.spec.stall_action
        if action == "fail" or TrialRecord.of(item.trial).submissions >= MAX_SUBMISSIONS:
            self.ends.fail(item.trial, f'stalled: {said}; [study] stall_action = "{action}"')
            return
        self.out(f"trial {item.trial.number} stalled: {said}; job stopped, submitting it again")
        records.write(item.trial, stalled="")
        self.submit(item.trial, reported=item.reported)

    def diverge(self, item: Watched, epoch: int, value: float) -> None:
        """The trial's metric is NaN or infinite: it diverged. That is a result (the configuration does
        not train), not a failure to run it again: the trial is told PRUNED with `diverged` kept, its
        job stopped, its epochs left in its run dir for the report."""
        item.job.cancel()
        del self.running[item.trial.number]
        said = f"{self.spec.metric} {value} at epoch {item.of_epochs(epoch)}"
        records.write(item.trial, diverged=said)
        if self.ends.tell(item.trial, state=TrialState.PRUNED):
            self.out(f"trial {item.trial.number} diverged: {said}; job stopped, its epochs kept")

    def finish(self, item: Watched, history: list[Epoch]) -> None:
        outcome = item.job.outcome()
        number = item.trial.number
        # a job killed from outside (by hand), or one the scheduler's outage kept from starting the
        # trial, is not the trial's failure: resumed, and not counted
        uncounted = outcome.killed or outcome.outage
        if outcome.status == "lost" and (
            uncounted or TrialRecord.of(item.trial).submissions < MAX_SUBMISSIONS
        ):
            del self.running[number]
            why = "was killed from outside" if outcome.killed else "is gone without a result"
            why = f"did not start the trial ({outcome.detail})" if outcome.outage else why
            self.out(f"trial {number} job {item.job.job_id} {why}; resuming it")
            self.submit(item.trial, reported=item.reported, counted=not uncounted)
            return
        del self.running[number]
        value = best_logged(history, self.spec.metric, self.spec.direction)
        if outcome.status == "success" and value is not None:
            if not self.ends.tell(item.trial, value):
                return
            self.failures.completed()
            self.out(
                f"trial {number} complete  {self.spec.metric} {value:.4f} (best of {len(history)} epochs)"
            )
            return
        reason = outcome.detail or f"the job succeeded but logged no finite '{self.spec.metric}'"
        if outcome.status == "lost":
            reason = f"{reason} ({MAX_SUBMISSIONS} submissions; giving up)"
        self.ends.fail(item.trial, reason, count=not self.metric_watch.misnamed(history))
        self.metric_watch.check(number, history)  # a misnamed metric stops the launch here

    def stop_running(self, reason: str) -> None:
        """Stop every running trial's job and tell the trial FAIL (the next launch runs it again)."""
        for number in list(self.running):
            item = self.running.pop(number)
            item.job.cancel()
            self.ends.fail(item.trial, reason, count=False)
