"""The README's first quick-start command, as a new user runs it: a fresh clone, `bash scripts/try.sh`.

(The second, `bash scripts/test.sh`, is what CI runs.) The set-up runs for real into a fresh virtual
environment, offline: the packages it would download are this test run's own (a .pth file points at
them), so the script finds torch and sweep's dependencies installed and fetches nothing.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import optuna
import pytest

from sweep.store.storage import default_url
from tests.conftest import deadline

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_try_sh_on_a_fresh_clone_runs_the_smoke_study_and_writes_its_report(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=deadline(120))
    venv = tmp_path / "venv"
    # no pip or setuptools of its own: the ones of this run (setuptools >= 77 builds sweep)
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=deadline(120)
    )
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=deadline(60),
    ).stdout.strip()  # fmt: skip
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], *site.getsitepackages()])
    (Path(purelib) / "test-dependencies.pth").write_text("\n".join(ours) + "\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))},
        "SWEEP_VENV": str(venv),
        "PIP_NO_INDEX": "1",  # nothing is downloaded: what the script needs is installed already
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads a "no-" variable backwards: 0 turns isolation off
        "PATH": os.environ["PATH"],
    }
    done = subprocess.run(
        ["bash", "scripts/try.sh"], cwd=clone, env=env, capture_output=True, text=True, timeout=deadline(900)
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "smoke: 4 trials (4 complete)" in done.stdout
    report = (clone / "results" / "smoke.md").read_text()
    assert report.count("| SGD |") + report.count("| Adam |") + report.count("| **SGD** |") + report.count(
        "| **Adam** |"
    ) == 4  # fmt: skip
    assert (clone / "results" / "smoke.html").is_file()
    assert "sweep launch --study smoke" in done.stdout and "Trials: 4 complete" in done.stdout
    # the local executor end to end, two jobs at a time (what tests/sweep/test_launch.py checks on debug)
    trials = optuna.load_study(study_name="smoke", storage=default_url(clone / "results")).trials
    assert [t.params for t in trials] == [
        {"optimizer": o, "lr": lr} for o in ("sgd", "adam") for lr in (0.05, 0.01)
    ]
    assert {t.user_attrs["executor"] for t in trials} == {"local"}
    # the data is learnable: the best trial is well above chance (10%) after 2 epochs
    assert max(t.value for t in trials if t.value is not None) >= 0.25
    lines = done.stdout.splitlines()
    assert sum(" submitted " in line for line in lines) == 4
    assert sum(line.endswith("(best of 2 epochs)") for line in lines) == 4
    assert any(line.startswith("smoke: 4 trials (4 complete); best trial ") for line in lines)
    assert (clone / "results" / "runs" / "smoke" / "0" / "submitit").is_dir()
