"""Every use of Optuna's and submitit's private API, each with the reason no public one serves.

pyproject.toml bounds both packages to the majors these were tested with; a new major may move any
of them, and this package is then the one place to look. `riding_storage` (Optuna's storage made to wait
out a database outage) imports Optuna at its top, so it is a module of its own: a job process imports
this one, which loads no Optuna. `local_controller` (submitit's local controller, made to end a job's
tasks at the first that fails) is the program a `local` job's controller process runs.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import submitit

if TYPE_CHECKING:  # a job process imports the submitit half of this module: no optuna there (0.1 s)
    import optuna
    from optuna.storages import RDBStorage
    from optuna.trial import FrozenTrial


_LOCK = threading.Lock()  # `create_trial`'s swap of an Optuna function, one thread at a time


def trial_of(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
    """A live Trial for a stored trial, to write to it: FrozenTrial has only the private `_trial_id`."""
    import optuna

    return optuna.Trial(study, frozen._trial_id)


def trial_id(trial: FrozenTrial | optuna.Trial) -> int:
    """The trial's row id in the storage (what sweep's claims point at): `FrozenTrial._trial_id`."""
    return int(trial._trial_id)


def create_trial(study: optuna.Study, template: FrozenTrial) -> optuna.Trial:
    """Create `template` in the study in one transaction and return it as a live Trial.

    `Study.add_trial` does the same through the public storage API but returns nothing; the storage
    and the study id are only reachable as `Study._storage` and `Study._study_id`.

    A grid that grew stores a categorical param with more choices than its first trials did (a value
    added to a [space] list). Optuna's storage refuses that ("CategoricalDistribution does not support
    dynamic value space") through its module-level `check_distribution_compatibility`, which has no
    option; while the trial is created it is replaced by one that checks all else but the choices. Each
    trial keeps its own distribution, so its stored values read back as they were.
    """
    import optuna
    from optuna import distributions

    checked = distributions.check_distribution_compatibility

    def any_choices(old: Any, new: Any) -> None:
        both = isinstance(old, distributions.CategoricalDistribution) and isinstance(
            new, distributions.CategoricalDistribution
        )
        if not both:
            checked(old, new)

    with _LOCK:
        distributions.check_distribution_compatibility = any_choices  # type: ignore[assignment]
        try:
            trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
        finally:
            distributions.check_distribution_compatibility = checked
    return optuna.Trial(study, trial_id)


def rdb_storage(study: optuna.Study) -> RDBStorage:
    """The RDBStorage under a study, for sweep's own tables beside Optuna's (`sweep.store.claims`): a study
    keeps it as `Study._storage`, wrapped in Optuna's private `_CachedStorage` (its `_backend`)."""
    from optuna.storages import RDBStorage

    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    assert isinstance(backend, RDBStorage), f"not a database storage: {type(backend).__name__}"
    return backend


def check_schema_version(storage: RDBStorage) -> None:
    """Raise when the database's Optuna schema is not this Optuna's. A reader opens the storage with
    `skip_table_creation` (it must create nothing), and then only the private `_version_manager` checks."""
    storage._version_manager.check_table_schema_compatibility()


def study_id(study: optuna.Study) -> int:
    """The study's row id in the storage: Optuna keeps it as the private `Study._study_id`."""
    return int(study._study_id)


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial | None:
    """Trial `number` of the study read alone (two small queries), or None when there is none.
    `Study.get_trials` reads every trial; the per-trial reads are on the private `Study._storage`."""
    try:
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    except KeyError:
        return None
    return study._storage.get_trial(trial_id)


def enqueued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The params a WAITING trial was enqueued with: Optuna keeps them in its own system attribute
    `fixed_params` until the trial is asked for, and offers no accessor."""
    return dict(trial.system_attrs.get("fixed_params", {}))


def rdb_models() -> ModuleType:
    """Optuna's SQLAlchemy table definitions, for the report's one-query-per-table read: the schema is
    Optuna's to know, and it publishes no other description of it."""
    from optuna.storages._rdb import models

    return models


def local_process(job: submitit.Job[Any]) -> subprocess.Popen[bytes]:
    """The controller process of a submitit local job: submitit keeps it as `LocalJob._process`, and it
    is the only handle that tells its end without polling /proc."""
    process: subprocess.Popen[bytes] = job._process  # type: ignore[attr-defined]
    return process


def slurm_parameter_names() -> set[str]:
    """The SlurmExecutor parameters submitit knows (the rest go to `additional_parameters`); submitit
    validates against this private list itself."""
    return set(submitit.SlurmExecutor._valid_parameters())


def sbatch_text(**parameters: Any) -> str:
    """The sbatch script submitit would write for `parameters`: `sweep sbatch` shows the same #SBATCH
    lines `sweep launch` submits, and submitit renders them only in this private function."""
    from submitit.slurm.slurm import _make_sbatch_string

    return str(_make_sbatch_string(**parameters))


_SUBMITTING: set[int] = set()  # the threads inside `_own_session`
SUBMITIT_CONTROLLER = "submitit.local._local"  # the module submitit's `start_controller` runs
LOCAL_CONTROLLER = "sweep._compat.local_controller"  # what runs instead: one fate for the job's tasks


def _controller_command(command: Any) -> Any:
    """`command` with submitit's local controller module replaced by sweep's (`local_controller`)."""
    if isinstance(command, (list, tuple)) and list(command[1:3]) == ["-m", SUBMITIT_CONTROLLER]:
        return [command[0], "-m", LOCAL_CONTROLLER, *command[3:]]
    return command


class _SessionPopen(subprocess.Popen[bytes]):
    """subprocess.Popen that starts its process in a new session (setsid), running sweep's controller
    in place of submitit's, when called from a thread inside `_own_session`; from any other thread, as
    asked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if threading.get_ident() in _SUBMITTING:
            kwargs["start_new_session"] = True
            if args:
                args = (_controller_command(args[0]), *args[1:])
        super().__init__(*args, **kwargs)


@contextlib.contextmanager
def own_session() -> Iterator[None]:
    """Start submitit's local controller in a session of its own while a job is submitted (the local
    executor's).

    A terminal's Ctrl-C (SIGINT to its foreground process group) and SIGHUP then stop the launcher but
    not its jobs, which `sweep launch` re-attaches; and the job is one process group, led by the
    controller (its pid is the job id), that cancel signals as a whole. submitit's `start_controller`
    takes no such option; it looks `subprocess.Popen` up when called. The controller it starts is
    `local_controller` (submitit's, ending every task of the job once one fails), not submitit's own:
    `start_controller` hard-codes the module. Processes other threads start meanwhile are started as
    they ask.
    """
    real = subprocess.Popen
    subprocess.Popen = _SessionPopen  # type: ignore[misc,assignment]
    _SUBMITTING.add(threading.get_ident())
    try:
        yield
    finally:
        _SUBMITTING.discard(threading.get_ident())
        subprocess.Popen = real  # type: ignore[misc]


def finished_already(err: ValueError) -> bool:
    """Whether `study.tell` refused a trial because it was finished already: Optuna raises a plain
    ValueError ("Cannot tell a COMPLETE trial.") with no subclass of its own to catch."""
    return "Cannot tell a " in str(err)


class SharedDistributions:
    """Makes the finished trials in Optuna's storage cache share one object per distinct distribution.

    The cache (the private `_CachedStorage._studies[study id].trials`) keeps every trial of the study for
    the launcher's life, each with its own copy of its parameters' distributions decoded from JSON. A grid
    dimension's distribution lists all its values, so a one-parameter grid of N values cost O(N) a trial
    (89 KB a trial at 2,000: benchmarks/launcher_memory.py). Equal distributions are interchangeable
    (never changed; compared and hashed by value), and `FrozenTrial.distributions` may be set. Each call
    costs the trials finished since the last one.
    """

    def __init__(self) -> None:
        self.seen: set[int] = set()  # trial numbers whose distributions are shared already
        self.canonical: dict[Any, Any] = {}  # each distinct distribution -> the one object kept

    def share(self, study: optuna.Study) -> None:
        info = getattr(study._storage, "_studies", {}).get(study._study_id)
        if info is None:  # not a cached storage: nothing kept between reads
            return
        for number, trial in list(info.trials.items()):
            if number in self.seen or not trial.state.is_finished():
                continue
            trial.distributions = {
                name: self.canonical.setdefault(dist, dist) for name, dist in trial.distributions.items()
            }
            self.seen.add(number)
