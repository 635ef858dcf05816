"""The `sweep` command: a thin dispatcher. Each command adds its own sub-parser beside its handler
(`sweep.launcher.command`, `sweep.report.command`, `sweep.commands.*`); a user's error is one line and
exit 2 (`trainer.errors.run_command`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from sweep import __version__
from sweep.errors import run_command


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see sweep --help)\n")


# Each command's module (its sub-parser and handler), in the order `sweep --help` lists them. Only the
# named command's module is imported: `sweep status` need not load the launcher, nor `sweep launch` pandas.
COMMANDS = {
    "launch": "sweep.launcher.command",
    "status": "sweep.commands.status",
    "logs": "sweep.commands.logs",
    "report": "sweep.report.command",
    "dashboard": "sweep.commands.dashboard",
    "cancel": "sweep.commands.cancel",
    "sbatch": "sweep.commands.sbatch",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of `sweep`; with `argv` naming a command first, of that command alone (a lighter import)."""
    first = next((arg for arg in (argv or []) if not arg.startswith("-")), None)
    names = [first] if first in COMMANDS else list(COMMANDS)
    parser = _Parser(prog="sweep", description="Hyperparameter studies of training jobs on SLURM clusters.")
    parser.add_argument("--version", action="version", version=f"sweep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in names:
        importlib.import_module(COMMANDS[name]).add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    # `sweep launch` says itself what Ctrl-C left running and how to go on: one line, not two. A dry
    # run starts nothing and says nothing of it: the plain line is its one.
    interrupted = "" if args.command == "launch" and not args.dry_run else "interrupted"
    return run_command(lambda: args.handler(args), interrupted=interrupted)


if __name__ == "__main__":
    sys.exit(main())
