"""What every command's parser shares: a sub-parser whose help leads its description, the storage
options and the storage they name, the --study help."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sweep.store.storage import url_of

DEFAULT_RESULTS = Path("results")
STUDY_HELP = "a study name (./studies/NAME.toml, else a shipped study) or the path of a .toml file"


def subcommand(commands: argparse._SubParsersAction, name: str, *, help: str) -> argparse.ArgumentParser:  # noqa: A002
    """A subcommand whose `sweep NAME --help` starts with the line `sweep --help` shows for it."""
    return commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")


def add_storage_args(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS,
        help="holds sweep.db (the default storage) and runs/<study>/<trial>/ (default: results)",
    )
    command.add_argument(
        "--storage",
        default=os.environ.get("SWEEP_STORAGE") or None,
        help="any SQLAlchemy URL (default: $SWEEP_STORAGE, else sqlite:///RESULTS_DIR/sweep.db)",
    )


def url(args: argparse.Namespace) -> str:
    """The storage of a command: --storage, else RESULTS_DIR/sweep.db."""
    return url_of(args.storage, args.results_dir)
