"""[detached] and [waits], and the old [launcher] table they replace: its keys still read, each with one
line naming its new home."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.errors import SweepError
from sweep.study.parse import load_toml
from sweep.study.spec import DetachedJob, Waits
from tests.sweep.conftest import TINY_TRAIN, sweep_main, write_study

GRID = '[study]\nsampler = "grid"\nn_trials = 1\n[train]\nepochs = 1\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(GRID + text)
    return path


def test_the_new_tables_are_read_with_their_defaults(tmp_path: Path) -> None:
    spec = load_toml(_write(tmp_path, "[detached]\ncpus = 2\n[waits]\nslurm_query_s = 5\n"))
    assert spec.detached == DetachedJob(cpus=2)
    assert spec.waits == Waits(slurm_query_s=5.0)
    assert spec.renamed == ()
    assert load_toml(_write(tmp_path, "")).waits == Waits(30.0, 60.0, 10.0)


def test_every_old_launcher_key_is_read_as_its_new_name_with_one_line_each(tmp_path: Path) -> None:
    old = (
        '[launcher]\npartition = "cpu"\ntime_min = 30\nmem_gb = 4\ncpus = 2\npoll_s = 7\n'
        "scheduler_outage_min = 5\nstorage_outage_min = 3\n"
    )
    path = _write(tmp_path, old)
    spec = load_toml(path)
    assert spec.detached == DetachedJob(partition="cpu", time_min=30, mem_gb=4.0, cpus=2)
    assert spec.waits == Waits(slurm_query_s=7.0, scheduler_outage_min=5.0, storage_outage_min=3.0)
    assert len(spec.renamed) == 7
    assert (
        f"{path}: [launcher] poll_s is now [waits] slurm_query_s; read as that, rename it there"
        in spec.renamed
    )
    assert (
        f"{path}: [launcher] mem_gb is now [detached] mem_gb; read as that, rename it there" in spec.renamed
    )
    # the stored plan (the spec as plain data) speaks the new names only
    assert set(spec.to_dict()) >= {"detached", "waits"} and "launcher" not in spec.to_dict()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[launcher]\npoll_s = 5\n[waits]\nslurm_query_s = 6\n", "[launcher] key 'poll_s' is also given"),
        ("[launcher]\npolls = 5\n", "[launcher] key 'polls' is unknown"),
        ("[waits]\npoll_s = 5\n", "[waits] key 'poll_s' is unknown"),
        ("[waits]\nslurm_query_s = 0\n", "[waits] key 'slurm_query_s' is 0"),
        ("[detached]\nmem_gb = -1\n", "[detached] key 'mem_gb' is -1"),
    ],
)
def test_a_bad_key_is_one_error_naming_the_table(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(SweepError) as err:
        load_toml(_write(tmp_path, text))
    assert fragment in str(err.value)


def test_a_launch_says_each_old_key_once_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = {"name": "old", "sampler": "grid", "n_trials": 1}
    path = write_study(tmp_path / "old.toml", study=study, train=TINY_TRAIN, waits={})
    path.write_text(path.read_text() + "\n[launcher]\npoll_s = 5\n")
    result = sweep_main(capsys, "launch", "--study", str(path), "--dry-run", "--results-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"{path}: [launcher] poll_s is now [waits] slurm_query_s; read as that, rename it there"
    ]
