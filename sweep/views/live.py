"""The live view of a study on a terminal: `sweep launch` (attached) and `sweep status --watch`.

`progress` builds plain data (`StudyProgress`: the study line and one `TrialRow` per running
trial) from the stored study and the running trials' run dirs; `render` turns it into rich
renderables; `LiveView` redraws it in place (rich.live.Live) and prints event lines above it. Where
stdout is not a terminal nothing here is used: the commands print their plain lines as before.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from sweep.gpu_hours import HoursTally
from sweep.polling import Throttle
from sweep.store.configs import file_ids
from sweep.store.records import StudyRecord
from sweep.study.plan import missing_trials, next_sampled_config
from sweep.study.spec import StudySpec, params_text
from sweep.views.trial_row import TrialRow, elapsed_seconds, trial_row

READ_SECONDS = 1.0  # the storage and the run dirs are read at most this often
REFRESH_PER_SECOND = 2  # redraws of the view; its data changes at most once per READ_SECONDS
BAR_WIDTH = 24
# A launcher's per-epoch line (`trial 3 epoch 2/50  val_acc 0.41`): the view's bars and metrics show
# the same, so above the view they would only push the other events out of sight.
EPOCH_LINE = re.compile(r"^trial \d+ epoch ")


@dataclass(frozen=True)
class StudyProgress:
    """The study line of the view and its running trials' rows."""

    name: str
    metric: str
    complete: int
    running: int
    queued: int  # WAITING trials plus, when the study file is known, the runs not yet started
    pruned: int
    failed: int
    gpus: int  # per trial; 0: the hours shown are the jobs' wall-clock hours (CPU jobs)
    # GPU-hours so far as `sweep status` counts them (sacct, the manifests: `sweep.gpu_hours`); with no
    # GPUs, the trials' stored wall-clock hours (running ones until now)
    hours: float
    eta_seconds: float | None  # None until one trial finished
    trials: tuple[TrialRow, ...]  # the running trials'


def runs_left(spec: StudySpec, trials: Sequence[FrozenTrial], ids: Mapping[str, int] | None = None) -> int:
    """Runs of the study file that no trial has taken yet: planned ones, and sampled ones to come."""
    left = len(missing_trials(spec, trials, ids))
    next_config = next_sampled_config(spec, trials)
    if next_config is not None:
        left += (spec.n_trials - next_config) * spec.repeats
    return left


def progress(
    study: optuna.Study,
    *,
    spec: StudySpec | None = None,
    parallel: int | None = None,
    now: datetime | None = None,
    tally: HoursTally | None = None,
) -> StudyProgress:
    """The view's data: counts, hours and ETA from the stored trials, each running trial's epochs from its
    run dir. `spec` adds the runs not started yet to `queued`; `parallel` (default: the trials running)
    divides the study's ETA; `tally` keeps the GPU-hours between reads (else they are all read now)."""
    now = now or datetime.now()  # Optuna stores naive local times
    trials = study.get_trials(deepcopy=False)
    record = StudyRecord.of(study)
    metric = record.metric or "value"
    direction = study.direction.name.lower()
    states = [trial.state for trial in trials]
    running = [trial for trial in trials if trial.state == TrialState.RUNNING]
    left = runs_left(spec, trials, file_ids(study, spec)) if spec is not None else 0
    queued = states.count(TrialState.WAITING) + left
    gpus = record.gpus or 0
    if gpus:
        hours = (tally or HoursTally()).hours(trials, gpus).used
    else:
        hours = sum(elapsed_seconds(trial, now) for trial in trials) / 3600
    return StudyProgress(
        name=study.study_name,
        metric=metric,
        complete=states.count(TrialState.COMPLETE),
        running=len(running),
        queued=queued,
        pruned=states.count(TrialState.PRUNED),
        failed=states.count(TrialState.FAIL),
        gpus=gpus,
        hours=hours,
        eta_seconds=_study_eta(trials, running, queued, parallel or len(running) or 1, now),
        trials=tuple(trial_row(trial, metric, direction, now) for trial in running),
    )


def _study_eta(
    trials: Sequence[FrozenTrial], running: Sequence[FrozenTrial], queued: int, parallel: int, now: datetime
) -> float | None:
    """Mean duration of the COMPLETE trials × what is left (the running trials' rest, the queued ones)
    / the jobs at once; None until one trial completed."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.datetime_complete]
    durations = [elapsed_seconds(t, now) for t in done]
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    rests = [max(0.0, mean - elapsed_seconds(trial, now)) for trial in running]
    # never less than the longest running trial's rest: those run at once, not one after another
    return max(max(rests, default=0.0), (sum(rests) + queued * mean) / max(parallel, 1))


# -- rendering ----------------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """`1:02:03`, `4:05`, or `unknown`."""
    if seconds is None:
        return "unknown"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def study_line(data: StudyProgress) -> str:
    """The view's first line: counts, hours so far and the study's ETA."""
    hours = f"GPU-hours {data.hours:.2f}" if data.gpus else f"job-hours {data.hours:.2f} (no GPUs)"
    return (
        f"study {data.name} ({data.metric}): {data.complete} complete, {data.running} running, "
        f"{data.queued} queued, {data.pruned} pruned, {data.failed} failed  {hours}  "
        f"ETA {duration(data.eta_seconds)}"
    )


def render(data: StudyProgress, note: str = "") -> RenderableType:
    """The study line, then one row per running trial: bar, epochs, last and best metric, times, params."""
    rows = Table.grid(padding=(0, 1))
    for _ in range(8):
        rows.add_column(no_wrap=True)
    for trial in data.trials:
        epochs = f"{trial.epochs_done}/{trial.epochs if trial.epochs is not None else '?'}"
        rows.add_row(
            f"  trial {trial.number}",
            ProgressBar(total=trial.epochs, completed=trial.epochs_done, width=BAR_WIDTH),
            f"epoch {epochs}",
            f"last {_number(trial.last)}",
            f"best {_number(trial.best)}",
            f"{trial.epoch_seconds:.1f}s/epoch" if trial.epoch_seconds is not None else "-s/epoch",
            # a stalled or held trial says so: its bar alone would not
            Text(f"ETA {duration(trial.eta_seconds)}").append(
                f"  {trial.note}" if trial.note else "", "bold"
            ),
            Text(params_text(trial.params), overflow="ellipsis"),
        )
    parts: list[RenderableType] = [Text(study_line(data), style="bold", overflow="ellipsis", no_wrap=True)]
    if data.trials:
        parts.append(rows)
    if note:
        parts.append(Text(note, style="dim"))
    return Group(*parts)


# -- the live region ------------------------------------------------------------------------------------


class LiveView:
    """The view redrawn in place while the context is open; calling it prints an event line above it
    (after the context closed: a plain line, as without a view)."""

    def __init__(
        self, build: Callable[[], StudyProgress], *, read_s: float = READ_SECONDS, epoch_lines: bool = False
    ) -> None:
        self.build = build
        self.epoch_lines = epoch_lines
        self.console = Console()
        self.data: StudyProgress | None = None
        self.note = ""
        self.due = Throttle(read_s)
        self.lock = threading.Lock()  # the refresh thread and the caller both read
        self.closing = False
        self.live: Live | None = None

    def latest(self) -> StudyProgress | None:
        """The view's data, read again when it is READ_SECONDS old."""
        with self.lock:
            if not self.closing and self.due.take():
                try:
                    self.data, self.note = self.build(), ""
                # In the refresh thread an error would end the redraws with a traceback over the view:
                # keep the last frame and say why it is not new (a busy or vanished database).
                except Exception as err:  # noqa: BLE001
                    self.note = f"(view not updated: {type(err).__name__}: {str(err).splitlines()[0][:100]})"
            return self.data

    def renderable(self) -> RenderableType:
        data = self.latest()
        return render(data, self.note) if data is not None else Text("reading the study…")

    def __call__(self, line: str) -> None:
        if self.live is None:
            print(line, flush=True)
        elif self.epoch_lines or not EPOCH_LINE.match(line):
            self.live.console.print(Text(line), soft_wrap=True)

    def __enter__(self) -> LiveView:
        # transient: at the end the view goes, leaving the event lines and what the command prints last
        self.live = Live(
            get_renderable=self.renderable,
            console=self.console,
            refresh_per_second=REFRESH_PER_SECOND,
            transient=True,
        )
        self.live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.closing = True  # the last redraw (Ctrl-C, an error) reads nothing more
        live, self.live = self.live, None
        if live is not None:
            live.__exit__(kind, error, tb)


def on_terminal() -> bool:
    """Whether stdout is a terminal, where the view is shown (not a file, a pipe, CI's log)."""
    return sys.stdout.isatty()


def launch_view(spec: StudySpec, url: str, *, parallel: int) -> LiveView:
    """The view `sweep launch` shows while its launcher runs: the study read through its own storage
    handle (the launcher's is its own thread's), queued counted from the study file."""
    from sweep.store import storage as storage_mod

    study: list[optuna.Study] = []
    tally = HoursTally()

    def build() -> StudyProgress:
        if not study:  # opened on the first read, in the refresh thread: the launch is not delayed
            study.append(storage_mod.read_study(url, spec.name))
        return progress(study[0], spec=spec, parallel=parallel, tally=tally)

    return LiveView(build)


def watch_view(study: optuna.Study, *, spec: StudySpec | None, read_s: float) -> LiveView:
    """The view `sweep status --watch` shows."""
    tally = HoursTally()
    return LiveView(lambda: progress(study, spec=spec, tally=tally), read_s=read_s)
