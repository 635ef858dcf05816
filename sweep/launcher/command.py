"""`sweep launch`: its parser and handler (attached, `--dry-run`, `--detach`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from sweep.commands.args import STUDY_HELP, add_storage_args, subcommand, url
from sweep.errors import StudyStopped, SweepError
from sweep.study.spec import StudySpec


def add_parser(commands: argparse._SubParsersAction) -> None:
    from sweep.executors import EXECUTORS

    command = subcommand(commands, "launch", help="run a study, or continue it where it stopped")
    command.add_argument("--study", required=True, help=STUDY_HELP)
    command.add_argument(
        "--executor", choices=EXECUTORS, default="auto", help="where jobs run (default: auto)"
    )
    command.add_argument(
        "--parallel",
        type=int,
        help="jobs running at once (default: the study's [resources] array_parallelism, else 1)",
    )
    add_storage_args(command)
    command.add_argument(
        "--dry-run", action="store_true", help="print the trials it would submit; write nothing"
    )
    command.add_argument(
        "--budget-gpu-hours",
        type=float,
        metavar="X",
        help="start no new trial once the study's GPU-hours used plus those its running trials are "
        "expected to use reach X (replaces [study] budget_gpu_hours)",
    )
    command.add_argument(
        "--detach",
        action="store_true",
        help="return at once; the launcher runs on as a SLURM job of its own (slurm executor) or a "
        "background process (output in RESULTS_DIR/NAME.launcher.log)",
    )
    for flag, kind, metavar, what in (
        ("--launcher-partition", str, None, "partition"),
        ("--launcher-time", int, "MIN", "time limit"),
        ("--launcher-mem", float, "GB", "memory"),
    ):
        command.add_argument(
            flag, type=kind, metavar=metavar, help=f"with --detach: the launcher job's {what}"
        )
    command.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sweep.launcher import dry_run, failed_line, launch
    from sweep.launcher.sigterm import EXIT_STATUS, Terminated, sigterm_raises
    from sweep.study.files import load_study

    spec = load_study(args.study)  # a bad study stops here, before any storage is touched
    for line in spec.renamed:  # an old key name: read as the new one, said once a launch
        print(line, file=sys.stderr)
    parallel = args.parallel if args.parallel is not None else spec.resources.array_parallelism or 1
    if parallel < 1:
        raise SweepError(f"--parallel must be 1 or more, got {parallel}")
    if args.dry_run:
        dry_run(spec, storage_url=url(args), executor=args.executor)
        return 0
    if args.detach:
        return _detach(args, spec, parallel)
    try:
        with sigterm_raises():
            summary = launch(
                spec,
                results_dir=args.results_dir,
                storage_url=args.storage,
                executor=args.executor,
                parallel=parallel,
                budget_gpu_hours=args.budget_gpu_hours,
            )
    except Terminated:  # its line is said
        return EXIT_STATUS
    except StudyStopped as stopped:  # the study's trials failed, not the command: exit 1
        print(f"error: {stopped}", file=sys.stderr)
        return 1
    failed = failed_line(summary)
    if failed is not None:  # a trial failed: a script's `sweep launch && sweep report` stops here
        print(f"error: {failed}", file=sys.stderr)
    return 0 if failed is None else 1


def _detach(args: argparse.Namespace, spec: StudySpec, parallel: int) -> int:

    from sweep.launcher import prepare
    from sweep.launcher.detach import detach
    from sweep.study.files import find_study

    study_file = Path(args.study) if args.study.endswith(".toml") else find_study(args.study)
    assert study_file is not None  # load_study found it
    overrides = {
        "partition": args.launcher_partition,
        "time_min": args.launcher_time,
        "mem_gb": args.launcher_mem,
    }
    for flag, value in (("--launcher-time", args.launcher_time), ("--launcher-mem", args.launcher_mem)):
        if value is not None and value <= 0:
            raise SweepError(f"{flag} must be more than 0, got {value}")
    wanted = {key: value for key, value in overrides.items() if value is not None}
    spec = dataclasses.replace(spec, detached=dataclasses.replace(spec.detached, **wanted))
    prepared = prepare(
        spec,
        results_dir=args.results_dir,
        storage_url=args.storage,
        executor=args.executor,
        parallel=parallel,
    )
    detach(
        spec,
        study_file,
        prepared,
        results_dir=args.results_dir,
        storage_url=args.storage,
        executor=args.executor,
        parallel=parallel,
        budget_gpu_hours=args.budget_gpu_hours,
    )
    return 0
