"""A plain (not editable) install: the wheel carries the shipped studies and sbatch template, and `sweep`
runs them from any folder; `./studies/NAME.toml` of the current folder is found first."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import deadline

ROOT = Path(__file__).resolve().parents[1]
WHERE_FROM = "import sweep, trainer; print(sweep.__file__, trainer.__file__)"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding sweep from its wheel; the test venv's packages serve as its dependencies."""
    base = tmp_path_factory.mktemp("install")
    wheels = base / "wheels"
    # The wheel is built here, without build isolation, so nothing is downloaded.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheels), str(ROOT)],
        check=True, capture_output=True, timeout=deadline(300),
    )  # fmt: skip
    venv = base / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=deadline(120)
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=deadline(60),
    ).stdout.strip()  # fmt: skip
    # torch, optuna, ... from this venv: a plain path entry, so its own .pth files (the editable
    # install of this checkout among them) are not read and sweep comes from the wheel alone.
    dependencies = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (Path(purelib) / "test-dependencies.pth").write_text("\n".join(dict.fromkeys(dependencies)) + "\n")
    wheel = next(wheels.glob("sweep-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
        check=True, capture_output=True, timeout=deadline(300),
    )  # fmt: skip
    return venv


def _sweep(venv: Path, *args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [str(venv / "bin" / "sweep"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_installed_sweep_trains_from_the_wheel_and_finds_the_shipped_studies_from_an_empty_folder(
    installed: Path, tmp_path: Path
) -> None:
    """The wheel's own copy runs a job end to end (the launcher, the job module and the trainer); the
    shipped smoke study is found and rendered from an empty folder. (Training the whole smoke study is
    tests/test_quickstart.py's, on a fresh clone as the README has it.)"""
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import sweep, trainer; print(sweep.__file__, trainer.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=deadline(60),
    ).stdout  # fmt: skip
    assert (
        where.count(str(installed)) == 2 and str(ROOT) not in where
    )  # the wheel's copies, not this checkout
    (tmp_path / "tiny.toml").write_text(
        '[study]\nname = "tiny"\nsampler = "grid"\n[train]\ndataset = "fake"\ndevice = "cpu"\ndepth = 8\n'
        "epochs = 1\nbatch_size = 32\nnum_workers = 0\nfake_train_size = 160\nfake_test_size = 40\n"
        "val_size = 32\n[space]\nlr = [0.05]\n[resources]\ngpus = 0\n"
    )
    done = _sweep(
        installed,
        "launch",
        "--study",
        "tiny.toml",
        "--executor",
        "local",
        cwd=tmp_path,
        timeout=deadline(300),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tiny: 1 trial (1 complete)" in done.stdout, done.stdout
    planned = _sweep(installed, "launch", "--study", "smoke", "--dry-run", cwd=tmp_path, timeout=deadline(60))
    assert "smoke: 4 planned trials" in planned.stdout, planned.stdout + planned.stderr
    script = _sweep(
        installed, "sbatch", "--study", "smoke", "--config", "0", cwd=tmp_path, timeout=deadline(60)
    )
    assert script.returncode == 0 and script.stdout.startswith("#!/bin/bash"), script.stderr
    (config_file,) = (tmp_path / "results" / "runs" / "smoke").glob("config0-*/config.json")
    config = json.loads(config_file.read_text())
    assert (config["dataset"], config["depth"], config["epochs"]) == ("fake", 20, 2)  # the shipped file's


@pytest.mark.slow
def test_installed_sweep_finds_a_study_in_the_current_folder_first(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "mine.toml").write_text(
        '[study]\nsampler = "grid"\n[train]\ndataset = "fake"\ndevice = "cpu"\n'
        "[space]\nlr = [0.1, 0.2, 0.3]\n[resources]\ngpus = 0\n"
    )
    (tmp_path / "studies" / "smoke.toml").write_text(  # shadows the shipped smoke study
        '[study]\nname = "smoke"\nsampler = "grid"\n[train]\ndataset = "fake"\ndevice = "cpu"\n'
        "[space]\nlr = [0.5]\n[resources]\ngpus = 0\n"
    )
    mine = _sweep(
        installed,
        "launch",
        "--study",
        "mine",
        "--dry-run",
        "--executor",
        "local",
        cwd=tmp_path,
        timeout=deadline(60),
    )
    assert mine.returncode == 0, mine.stderr
    assert "mine: 3 planned trials" in mine.stdout
    smoke = _sweep(
        installed,
        "launch",
        "--study",
        "smoke",
        "--dry-run",
        "--executor",
        "local",
        cwd=tmp_path,
        timeout=deadline(60),
    )
    assert "smoke: 1 planned trials" in smoke.stdout, smoke.stdout
    missing = _sweep(
        installed,
        "launch",
        "--study",
        "nosuch",
        "--dry-run",
        "--executor",
        "local",
        cwd=tmp_path,
        timeout=deadline(60),
    )
    assert missing.returncode == 2 and "available studies: final, mine, optimizers" in missing.stderr


def test_an_editable_build_emits_no_warning_for_pip_to_show(tmp_path: Path) -> None:
    """`pip install -e .` printed setuptools' "Editable installation" notice (a BuildBackendWarning) at
    every set-up: the editable wheel is built here as pip has it built, in a copy of the project, with
    every warning recorded."""
    import shutil

    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for name in ("sweep", "trainer", "studies", "slurm_templates"):
        shutil.copytree(
            ROOT / name, project / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    from setuptools import build_meta\n"
        "    wheel = build_meta.build_editable('dist')\n"
        "print(wheel)\n"
        "print([f'{w.category.__name__}: {w.message}' for w in seen])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=deadline(120)
    )
    assert done.returncode == 0, done.stderr
    wheel, warned = done.stdout.splitlines()[-2:]
    assert wheel.endswith(".whl") and warned == "[]", warned
