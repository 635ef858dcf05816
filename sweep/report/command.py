"""`sweep report`: its parser and handler."""

from __future__ import annotations

import argparse
from pathlib import Path

from sweep.commands.args import add_storage_args, subcommand


def add_parser(commands: argparse._SubParsersAction) -> None:
    command = subcommand(
        commands, "report", help="a study's comparison table (markdown), its plots (HTML) and README block"
    )
    command.add_argument("--study", help="a stored study's name (or its .toml file)")
    command.add_argument(
        "--all",
        action="store_true",
        help="every configuration, those no longer in the study file too; without --study, of every study",
    )
    add_storage_args(command)
    command.add_argument(
        "--readme", type=Path, help="replace the <!-- sweep:NAME --> block of this file (added if missing)"
    )
    command.add_argument(
        "--format", choices=("md", "csv", "json"), default="md", help="what is printed (default: md)"
    )
    command.add_argument(
        "--out",
        type=Path,
        help="write the files here (default: the results folder, which may then be read-only)",
    )
    command.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sweep.report import report

    text = report(
        study=args.study,
        all_studies=args.all and args.study is None,
        all_configs=args.all,
        results_dir=args.results_dir,
        storage_url=args.storage,
        readme=args.readme,
        fmt=args.format,
        out_dir=args.out,
    )
    print(text, end="")
    return 0
