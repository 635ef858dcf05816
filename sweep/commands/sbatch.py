"""`sweep sbatch`: a trial's job as a plain sbatch script (the shipped slurm_templates/train.sbatch), for
users who submit by hand.

The #SBATCH options are the ones submitit writes for `sweep launch --executor slurm` (the same
`slurm_parameters(resources)`, rendered by submitit itself), less submitit's own plumbing (its log
files, its USR2 signal, its wckey); the command is the launched job's own (`python -m sweep.executors.job`
on the trial's run dir: the trainer, with the run dir locked), which resumes from checkpoint.pt when the
job is requeued or submitted again.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import shlex
import string
import sys
from pathlib import Path
from typing import Any

from sweep import base as base_mod
from sweep._compat import sbatch_text
from sweep.commands.args import STUDY_HELP, add_storage_args, subcommand
from sweep.errors import SweepError
from sweep.executors.files import JobFiles
from sweep.executors.slurm import SRUN_SEVERAL_TASKS, job_name, slurm_parameters
from sweep.store import storage
from sweep.store.records import TrialRecord
from sweep.study.plan import plan
from sweep.study.spec import Resources, StudySpec
from trainer.files import write_atomic
from trainer.paths import RunPaths

# What the job runs, through the same job code as `sweep launch`: the built-in trainer on the run dir's
# config.json, or the study's own program (the SWEEP_* contract, its own process group).
TRAINER_COMMAND = (
    "# the job `sweep launch` runs: the trainer on config.json, the run dir locked (no two jobs write it);\n"
    "# started again (requeue, preemption, or this script resubmitted) it resumes from checkpoint.pt\n"
    "srun --unbuffered {python} -m sweep.executors.job {run_dir_arg}"
)
PROGRAM_COMMAND = """# the study's own program; started again it is told so (SWEEP_RESTART) and resumes itself
srun --unbuffered {python} -m sweep.executors.program {run_dir_arg}"""
TEMPLATE = Path(str(importlib.resources.files("sweep") / "shipped" / "slurm_templates" / "train.sbatch"))
# Options submitit adds for its own machinery; the plain script has its own log file and no USR2 handler.
SUBMITIT_ONLY = ("--output=", "--error=", "--signal=", "--wckey=", "--open-mode=")


def sbatch_options(resources: Resources, *, name: str) -> list[str]:
    """The `#SBATCH` lines submitit writes for `resources`, without its own log/signal options."""
    params = slurm_parameters(resources)
    text = sbatch_text(command="true", folder="/submitit", job_name=name, **params)
    lines = [line for line in text.splitlines() if line.startswith("#SBATCH ")]
    return [line for line in lines if not line.removeprefix("#SBATCH ").startswith(SUBMITIT_ONLY)]


def render(
    *,
    study: str,
    trial: int | str,
    resources: Resources,
    run_dir: Path,
    workdir: Path,
    python: str = sys.executable,
    template: Path = TEMPLATE,
    program: bool = False,
) -> str:
    """The sbatch script that trains `run_dir/config.json` in `run_dir` as trial `trial` of `study`;
    with `program`, the study's own program as `run_dir/program.json` describes it."""
    try:
        text = template.read_text()
    except OSError as err:
        raise SweepError(f"sbatch template {template}: {err.strerror}") from None
    values = {
        "study": study,
        "trial": str(trial),
        "sbatch_options": "\n".join(sbatch_options(resources, name=job_name(study, trial))),
        "run_dir": str(run_dir),
        "run_dir_arg": shlex.quote(str(run_dir)),
        "workdir": str(workdir),
        "python": shlex.quote(python),
    }
    command = (PROGRAM_COMMAND if program else TRAINER_COMMAND).format(**values)
    if resources.tasks > 1:  # as submitit's srun_args (slurm_parameters): one failed rank ends the job
        command = command.replace("srun --unbuffered ", f"srun --unbuffered {' '.join(SRUN_SEVERAL_TASKS)} ")
    values["command"] = command
    try:
        return string.Template(text).substitute(values)
    except (KeyError, ValueError) as err:
        raise SweepError(f"sbatch template {template}: bad placeholder {err}") from None


def sbatch_script(
    spec: StudySpec,
    *,
    results_dir: Path,
    storage_url: str | None = None,
    trial: int | None = None,
    config: int | None = None,
    repeat: int = 0,
) -> str:
    """The script for stored trial `trial`, or for planned configuration `config` (seed offset `repeat`)
    when no trial exists yet; writes the run dir's config.json when it is missing.

    Raises:
        SweepError: No such study, trial or planned configuration.
    """
    spec, _ = base_mod.with_base(spec, storage.url_of(storage_url, results_dir))  # what its trials run
    if trial is not None:
        label, params, repeat, run_dir = _stored_trial(spec, trial, results_dir, storage_url)
    elif config is not None:
        label, params, run_dir = _planned(spec, config, repeat, results_dir)
    else:
        raise SweepError("sweep sbatch needs --trial N or --config I")
    paths = RunPaths(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if spec.program is not None:
        values = spec.trial_values(params, repeat=repeat)
        job = {"program": spec.program.to_dict(), "metric": spec.metric, "values": values}
        write_atomic(JobFiles(run_dir).program, json.dumps(job, indent=2) + "\n")
    elif not paths.config.exists():
        write_atomic(paths.config, spec.train_config(params, repeat=repeat).to_json())
    return render(
        study=spec.name,
        trial=label,
        resources=spec.resources,
        run_dir=run_dir,
        workdir=Path.cwd(),
        program=spec.program is not None,
    )


def _stored_trial(
    spec: StudySpec, number: int, results_dir: Path, storage_url: str | None
) -> tuple[str, dict[str, Any], int, Path]:
    url = storage.url_of(storage_url, results_dir)
    study = storage.read_study(url, spec.name)
    with storage.storage_errors(url):
        trials = study.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    if not found:
        raise SweepError(f"study '{spec.name}' has no trial {number} (it has {len(trials)} trials)")
    record = TrialRecord.of(found[0])
    run_dir = record.run_dir or storage.runs_dir(results_dir, spec.name) / str(number)
    return str(number), dict(found[0].params), record.repeat, run_dir.resolve()


def _planned(
    spec: StudySpec, config: int, repeat: int, results_dir: Path
) -> tuple[str, dict[str, Any], Path]:
    planned = {(item.config, item.repeat): item for item in plan(spec)}
    if (config, repeat) not in planned:
        configs = len({key[0] for key in planned})
        raise SweepError(
            f"study '{spec.name}' plans configurations 0-{configs - 1} with repeats 0-{spec.repeats - 1};"
            f" no config {config} repeat {repeat}"
        )
    label = f"config{config}-repeat{repeat}"
    run_dir = (storage.runs_dir(results_dir, spec.name) / label).resolve()
    return label, dict(planned[(config, repeat)].params), run_dir


# -- the command line ----------------------------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction) -> None:
    command = subcommand(
        commands, "sbatch", help="print a trial's job as a plain sbatch script (slurm_templates/train.sbatch)"
    )
    command.add_argument("--study", required=True, help=STUDY_HELP)
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="a stored trial's number")
    which.add_argument("--config", type=int, help="a planned configuration (0-based), before any launch")
    command.add_argument("--repeat", type=int, default=0, help="with --config: the seed offset (default 0)")
    add_storage_args(command)
    command.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sweep.study.files import load_study

    script = sbatch_script(
        load_study(args.study),
        results_dir=args.results_dir,
        storage_url=args.storage,
        trial=args.trial,
        config=args.config,
        repeat=args.repeat,
    )
    print(script, end="")
    return 0
