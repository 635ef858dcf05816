"""`python -m trainer`: one training run by hand, from a config file, flags, or both (flags win)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, NoReturn

from trainer.config import TrainConfig, field_docs, field_types
from trainer.errors import UserError, run_command

EXAMPLE = """examples:
  python -m trainer --dataset fake --depth 20 --epochs 3 --device cpu --num-workers 0 --run-dir runs/try
  python -m trainer --config runs/try/config.json          (resume, or rerun, in the config's directory)
  python -m trainer --print-model --depth 164"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and exit 2, like every other user error
        self.exit(2, f"error: {message} (see python -m trainer --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m trainer",
        description="Train a pre-activation ResNet on CIFAR-10 (or generated fake data); resumable.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, help="TrainConfig as JSON; flags given too override its fields"
    )
    parser.add_argument(
        "--run-dir", type=Path, help="where the run's files go (default: the --config directory)"
    )
    parser.add_argument(
        "--print-model", action="store_true", help="print the layer summary and parameter count"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    fields = parser.add_argument_group("TrainConfig fields (study files use the same names)")
    docs, defaults = field_docs(), _defaults()
    for name, hint in field_types().items():
        flag = "--" + name.replace("_", "-")
        # argparse formats help texts with %: a literal one ("50% of epochs") is written %%
        help_text = f"{docs.get(name, '')} (default: {defaults[name]})".strip().replace("%", "%%")
        if hint is bool:
            fields.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            fields.add_argument(
                flag, dest=name, type=_parse_as(hint), default=argparse.SUPPRESS, metavar=name.upper(),
                help=help_text,
            )  # fmt: skip
    return parser


def _defaults() -> dict[str, Any]:
    """Each field's default as the class states it (TrainConfig() would validate a whole config)."""
    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _parse_as(hint: Any) -> Any:
    if isinstance(hint, types.UnionType):  # int | None: a number, or "none"
        inner = next(arm for arm in typing.get_args(hint) if arm is not type(None))
        return lambda text: None if text.lower() == "none" else inner(text)
    return hint


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config file's fields (if any) overridden by the flags given."""
    base = TrainConfig.from_json_file(args.config).to_dict() if args.config else {}
    flags = {name: getattr(args, name) for name in field_types() if hasattr(args, name)}
    return TrainConfig.from_dict(base | flags, source="command line" if not args.config else str(args.config))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(
        lambda: _train(args),
        interrupted="\ninterrupted; the same command resumes after the last finished epoch",
    )


def flag_words(message: str) -> str:
    """A config error in the words of the command line: `download = true` -> `--download`,
    `dataset = 'fake'` -> `--dataset fake`, `data_dir` -> `--data-dir`."""

    def flag(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(3)
        dashed = "--" + name.replace("_", "-")
        if value in ("true", "True"):
            return dashed
        if value in ("false", "False"):
            return "--no-" + name.replace("_", "-")
        return f"{dashed} {value}"

    names = "|".join(sorted(field_types(), key=len, reverse=True))
    message = re.sub(rf"\b({names}) = (['\"]?)([^'\",;)\s]+)\2", flag, message)
    underscored = "|".join(name for name in field_types() if "_" in name)
    return re.sub(rf"(?<![-\w])({underscored})\b", lambda m: "--" + m.group(1).replace("_", "-"), message)


def _train(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UserError as err:
        if args.config is None:  # the config came from flags: say it in flags
            raise UserError(flag_words(str(err))) from None
        raise


def _run(args: argparse.Namespace) -> int:
    if args.print_model:
        from trainer.summary import model_summary

        depth = getattr(args, "depth", None) or config_from_args(args).depth
        print(model_summary(depth))
        return 0
    config = config_from_args(args)
    run_dir = args.run_dir or (args.config.parent if args.config else None)
    if run_dir is None:
        raise UserError("pass --run-dir DIR (or --config DIR/config.json): where the run's files go")
    from trainer.train import run

    run(config, run_dir, progress=not args.quiet)
    return 0
