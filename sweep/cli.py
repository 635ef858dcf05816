"""The `sweep` command: thin subcommands over the core modules; user errors become one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from sweep import __version__
from trainer.errors import SweepError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see sweep --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sweep", description="Hyperparameter studies of training jobs on SLURM clusters.")
    parser.add_argument("--version", action="version", version=f"sweep {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            parser.print_help()
            return 0
        handler = args.handler
        return int(handler(args) or 0)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
