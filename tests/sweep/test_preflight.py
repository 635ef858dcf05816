"""Checks before a launch or a dry run: the executor it names, the controller, one error line per problem."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from tests.sweep.conftest import assert_one_line_error, sweep_main, write_study

SLURM_CONF = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))


def _no_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no nvidia-smi, no sbatch


def test_a_dry_run_names_its_executor_and_why(
    tiny_smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_gpus(monkeypatch, tmp_path)
    args = ["launch", "--study", str(tiny_smoke), "--dry-run", "--results-dir", str(tmp_path / "r")]
    auto = sweep_main(capsys, *args)
    assert auto.returncode == 0, auto.stderr
    assert auto.stdout.splitlines()[-1] == "executor: local (auto: no sbatch on PATH)"
    debug = sweep_main(capsys, *args, "--executor", "debug")
    assert debug.stdout.splitlines()[-1] == "executor: debug (--executor debug)"


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="no SLURM client here")
def test_auto_names_the_sbatch_it_found(
    tiny_smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["launch", "--study", str(tiny_smoke), "--dry-run", "--results-dir", str(tmp_path / "r")]
    result = sweep_main(capsys, *args)
    assert f"executor: slurm (auto: sbatch found at {shutil.which('sbatch')})" in result.stdout.splitlines()


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.skipif(
    shutil.which("scontrol") is None or not SLURM_CONF.is_file(), reason="no SLURM client and config here"
)
def test_a_slurm_launch_whose_controller_is_down_is_refused_before_anything_is_stored(
    tiny_smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the shared cluster's daemons stay up: this client is pointed at a port no controller listens on
    conf = tmp_path / "slurm"
    shutil.copytree(SLURM_CONF.parent, conf)
    text = (conf / SLURM_CONF.name).read_text()
    (conf / SLURM_CONF.name).write_text(f"{text}\nSlurmctldPort={_unused_port()}\nMessageTimeout=2\n")
    monkeypatch.setenv("SLURM_CONF", str(conf / SLURM_CONF.name))
    results = tmp_path / "r"
    base = ["launch", "--study", str(tiny_smoke), "--executor", "slurm", "--results-dir", str(results)]
    dry = sweep_main(capsys, *base, "--dry-run")
    assert_one_line_error(dry, "--executor slurm: the SLURM controller does not answer (scontrol ping: ")
    assert "start it, or use --executor local" in dry.stderr
    assert "executor: slurm (--executor slurm)" in dry.stdout.splitlines()
    assert_one_line_error(sweep_main(capsys, *base), "the SLURM controller does not answer")
    assert not results.exists()


def test_two_problems_are_two_lines_and_a_shipped_study_is_copied_not_edited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no data/, no ./studies: the shipped optimizers study (1 GPU, CIFAR-10)
    _no_gpus(monkeypatch, tmp_path)
    args = ["launch", "--study", "optimizers", "--executor", "local", "--results-dir", "r"]
    for dry in ([], ["--dry-run"]):
        result = sweep_main(capsys, *args, *dry)
        assert result.returncode == 2
        gpus, data = result.stderr.splitlines()
        assert gpus.startswith("error: ") and "[resources] gpus = 1, but the GPUs" in gpus
        assert (
            "copy it to ./studies/optimizers.toml (sweep uses that copy) and in the copy set gpus = 0" in gpus
        )
        assert "a full-size ResNet there takes days" in gpus
        assert data.startswith("error: ") and "has no cifar-10-batches-py" in data
        assert "copy it to ./studies/optimizers.toml" in data
    assert not (tmp_path / "r").exists()


def test_a_programs_study_without_gpus_is_told_of_gpus_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    path = tmp_path / "own.toml"
    path.write_text(
        '[study]\nname = "own"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        "[space]\nlr = [0.1]\n"
        f'[resources]\ngpus = 1\n[program]\ncommand = ["{sys.executable}", "train.py"]\n'
    )
    _no_gpus(monkeypatch, tmp_path)
    result = sweep_main(capsys, "launch", "--study", str(path), "--executor", "local", "--dry-run")
    assert_one_line_error(result, "set [resources] gpus = 0 to run on the CPU, or use --executor slurm")
    assert "[train] device" not in result.stderr and "copy it" not in result.stderr


@pytest.mark.parametrize(
    ("executor", "resources", "fragment"),
    [
        ("local", {"nodes": 2}, "[resources] nodes = 2, but --executor local runs a trial on this machine"),
        ("debug", {"nodes": 3}, "[resources] nodes = 3, but --executor debug"),
        ("debug", {"tasks_per_node": 2}, "[resources] tasks_per_node = 2, but --executor debug runs one"),
    ],
)
def test_several_nodes_on_this_machine_are_one_error_line_before_anything_is_stored(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    executor: str,
    resources: dict[str, int],
    fragment: str,
) -> None:
    _no_gpus(monkeypatch, tmp_path)
    path = write_study(
        tmp_path / "ddp.toml",
        study={"name": "ddp", "sampler": "grid"},
        space={"lr": [0.1]},
        resources={"gpus": 0, "cpus": 1, **resources},
    )
    results = tmp_path / "r"
    base = ["launch", "--study", str(path), "--executor", executor, "--results-dir", str(results)]
    for dry in ([], ["--dry-run"]):
        assert_one_line_error(sweep_main(capsys, *base, *dry), fragment)
    assert not results.exists()
