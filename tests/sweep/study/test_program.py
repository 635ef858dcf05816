"""[program] in a study file: the user's own training program; every mistake is one line naming the key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sweep.errors import SweepError
from sweep.study import load_study
from sweep.study.plan import plan
from tests.sweep.conftest import assert_one_line_error, sweep_main

HEAD = '[study]\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
SPACE = '[train]\nepochs = 3\ndataset = "mine"\n[space]\nlr = [0.1, 0.2]\nwidth = [16, 32]\n'


def _study(tmp_path: Path, program: str, *, head: str = HEAD, space: str = SPACE) -> Path:
    (tmp_path / "train.py").write_text("def main(params, run_dir):\n    pass\n")
    path = tmp_path / "own.toml"
    path.write_text(head + space + "[program]\n" + program)
    return path


def test_a_command_study_takes_any_keys_and_fills_placeholders(tmp_path: Path) -> None:
    spec = load_study(
        _study(tmp_path, 'command = "python train.py --lr {lr} --width={width} --out {run_dir}"\n')
    )
    assert spec.program is not None
    assert spec.program.command == (
        "python",
        "train.py",
        "--lr",
        "{lr}",
        "--width={width}",
        "--out",
        "{run_dir}",
    )
    assert spec.program.workdir == str(tmp_path.resolve())
    assert [item.params for item in plan(spec)][:2] == [{"lr": 0.1, "width": 16}, {"lr": 0.1, "width": 32}]
    assert spec.trial_values({"lr": 0.2, "width": 32}) == {
        "epochs": 3,
        "dataset": "mine",
        "lr": 0.2,
        "width": 32,
    }
    assert spec.metric == "score" and spec.max_failures == 3


def test_a_callable_study_and_repeats_count_the_seed_up(tmp_path: Path) -> None:
    head = HEAD + "repeats = 2\n"
    spec = load_study(
        _study(tmp_path, 'callable = "train:main"\nenv = { MODE = "fast", DEBUG = true }\n', head=head)
    )
    assert spec.program is not None and spec.program.callable == "train:main"
    assert dict(spec.program.env) == {"MODE": "fast", "DEBUG": "true"}
    assert spec.trial_values({"lr": 0.1, "width": 16}, repeat=1)["seed"] == 1


@pytest.mark.parametrize(
    ("program", "fragments"),
    [
        ('command = ["python"]\ncallable = "train:main"\n', ["[program]", "both 'command' and 'callable'"]),
        ('env = { A = "1" }\n', ["[program]", "neither of 'command' and 'callable'"]),
        (
            'command = ["python", "train.py", "--depth", "{depth}"]\n',
            ["'command'", "{depth}", "known: dataset"],
        ),
        ('callable = "nosuchmodule:main"\n', ["'callable'", "nosuchmodule", "not found"]),
        ('callable = "train:nosuchfunction"\n', ["'callable'", "defines no top-level 'nosuchfunction'"]),
        ('callable = "train"\n', ["'callable'", "package.module:function"]),
        ('command = ["python"]\nworkdir = "missing"\n', ["'workdir'", "is not a folder"]),
        ('command = ["python"]\ncomand = 1\n', ["[program] key 'comand'", "did you mean 'command'"]),
        ('command = "python \'train.py"\n', ["'command'", "quotes"]),
        ("command = []\n", ["'command'", "list of strings"]),
        ('callable = "train:main"\npython = "/no/such/python"\n', ["'python'", "not an executable"]),
    ],
)
def test_a_bad_program_is_one_error_line_and_nothing_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], program: str, fragments: list[str]
) -> None:
    path = _study(tmp_path, program)
    with pytest.raises(SweepError) as caught:
        load_study(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)
    results = tmp_path / "results"
    result = sweep_main(
        capsys, "launch", "--study", str(path), "--executor", "debug", "--results-dir", str(results)
    )
    assert_one_line_error(result, *fragments)
    assert not results.exists()


def test_a_program_metric_needs_a_direction(tmp_path: Path) -> None:
    path = _study(tmp_path, 'command = ["python"]\n', head='[study]\nsampler = "grid"\nmetric = "score"\n')
    with pytest.raises(SweepError, match="direction' is missing; say whether score"):
        load_study(path)


def test_a_callable_checked_with_another_interpreter(tmp_path: Path) -> None:
    ok = _study(tmp_path, f'callable = "train:main"\npython = "{sys.executable}"\n')
    assert load_study(ok).program.python == sys.executable  # type: ignore[union-attr]
    bad = _study(tmp_path, f'callable = "nosuch:main"\npython = "{sys.executable}"\n')
    with pytest.raises(SweepError, match="does not import with"):
        load_study(bad)


def test_without_a_program_the_train_keys_are_still_trainconfig_fields(tmp_path: Path) -> None:
    path = tmp_path / "builtin.toml"
    path.write_text('[study]\nsampler = "grid"\n[train]\nwidth = 3\n[space]\nlr = [0.1]\n')
    with pytest.raises(SweepError, match="'width' is not a TrainConfig field"):
        load_study(path)
