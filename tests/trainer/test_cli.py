"""`python -m trainer` as a user runs it: exit codes and output lines. Runs and resumed runs are real
subprocesses; the error paths and --print-model run `main` in this process (the same lines and exit
statuses, without a torch import for each case; tests/trainer/test_checkpoint.py has an error path as a
subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import deadline, main_in_process
from trainer.cli import main
from trainer.config import field_docs

TINY = ["--dataset", "fake", "--depth", "8", "--epochs", "1", "--fake-train-size", "96", "--val-size", "32",
        "--num-workers", "0", "--device", "cpu"]  # fmt: skip


def _trainer(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        capture_output=True,
        text=True,
        timeout=deadline(120),
        cwd=cwd,
    )


def _in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """`python -m trainer ARGS` run by `main` in this process, in `cwd`: its exit status and output."""
    monkeypatch.chdir(cwd)
    return main_in_process(main, capsys, *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimizer", "rmsprop"], "error: command line: unknown optimizer 'rmsprop'; choose one of sgd,"),
        (["--batch-size", "0"], "error: command line: --batch-size must be positive, got 0"),
        (["--batch-size", "-3"], "error: command line: --batch-size must be positive, got -3"),
        (
            ["--data-dir", "no/such/dir", "--device", "cpu"],
            "error: data dir 'no/such/dir' has no cifar-10-batches-py",
        ),
        (["--epochs", "two"], "error: argument --epochs: invalid int value: 'two'"),
        ([], "error: pass --run-dir DIR"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    tmp_path: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_dir = [] if not args else ["--run-dir", str(tmp_path / "run")]
    result = _in_process(capsys, monkeypatch, *args, *run_dir, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_run_dir_that_cannot_be_made_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("")
    result = _in_process(
        capsys, monkeypatch, *TINY, "--run-dir", str(tmp_path / "a-file" / "run"), cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert str(tmp_path / "a-file") in result.stderr


def test_print_model_depth_164(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _in_process(capsys, monkeypatch, "--print-model", "--depth", "164", cwd=tmp_path)
    assert result.returncode == 0
    assert "Total parameters: 1,703,258" in result.stdout
    assert "stage3.17.conv3" in result.stdout  # the 18th bottleneck block of the last stage


@pytest.mark.slow
def test_flags_override_the_config_file_and_the_run_resumes_from_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _trainer(*TINY, "--optimizer", "adam", "--lr", "0.001", "--run-dir", str(run_dir), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "epoch 1/1" in first.stdout
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["optimizer"], saved["lr"], saved["depth"]) == ("adam", 0.001, 8)

    # the config file alone: the run dir defaults to its directory, and the run asks for one more epoch
    longer = _trainer("--config", str(run_dir / "config.json"), "--epochs", "2", cwd=tmp_path)
    assert longer.returncode == 2 and "epochs: 1 there, 2 now" in longer.stderr
    again = _trainer("--config", str(run_dir / "config.json"), cwd=tmp_path)
    assert again.returncode == 0 and "already complete" in again.stdout


@pytest.mark.slow
def test_fake_data_then_a_cifar10_run_on_it(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "trainer.fake_data", str(tmp_path / "data"), "--train", "100", "--test", "20"],
        capture_output=True, text=True, timeout=deadline(60),
    )  # fmt: skip
    assert made.returncode == 0 and "wrote 100 training and 20 test images" in made.stdout
    args = [a for a in TINY if a not in ("fake",)]
    args[args.index("--dataset") + 1 : args.index("--dataset") + 1] = ["cifar10"]
    result = _trainer(*args, "--data-dir", "data", "--evaluate-test", "--run-dir", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test loss" in result.stdout


def test_every_field_flag_says_what_it_is_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name, doc in field_docs().items():
        assert doc, f"{name} has no comment in TrainConfig"
        assert f"--{name.replace('_', '-')}" in text
    assert "sgd | sgd_nesterov | adagrad | adadelta | adam | adamw (default: sgd)" in text
    assert "(x0.1 at 50% and 75% of epochs) (default: constant)" in text


def test_errors_from_flags_name_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "none"), "--run-dir", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "set --download, point --data-dir at a copy, or use --dataset fake" in err
    assert "download = true" not in err
