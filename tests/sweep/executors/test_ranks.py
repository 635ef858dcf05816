"""torchrun's variables for each task of a trial of several (`sweep.executors.ranks`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.errors import SweepError
from sweep.executors.ranks import PORT_BASE, PORT_SPAN, master_port, torch_variables
from sweep.executors.slurm_queries import partition_nodes
from sweep.launcher import launch
from sweep.study import load_study
from tests.sweep.conftest import TINY_RESOURCES, TINY_TRAIN, write_study
from trainer.metrics import read_epochs
from trainer.paths import RunPaths


@dataclass
class Task:
    job_id: str = "4242"
    global_rank: int = 0
    local_rank: int = 0
    num_tasks: int = 1
    num_nodes: int = 1
    hostnames: list[str] = field(default_factory=lambda: ["node1"])


def test_a_job_of_one_task_gets_nothing() -> None:
    assert torch_variables(Task(), "0") == {}


def test_two_tasks_on_one_node_rendezvous_on_this_machine_each_with_its_gpu() -> None:
    second = torch_variables(Task(global_rank=1, local_rank=1, num_tasks=2), "2,3")
    assert second == {
        "RANK": "1",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(master_port("4242")),
        "CUDA_VISIBLE_DEVICES": "3",
    }
    # GPUs not one per task (none, or fewer): CUDA_VISIBLE_DEVICES is left as it is
    assert "CUDA_VISIBLE_DEVICES" not in torch_variables(Task(num_tasks=2), "")
    assert "CUDA_VISIBLE_DEVICES" not in torch_variables(Task(num_tasks=2), "0")


def test_two_nodes_meet_at_the_first_host() -> None:
    task = Task(global_rank=5, local_rank=1, num_tasks=8, num_nodes=2, hostnames=["gpu07", "gpu08"])
    variables = torch_variables(task, "0,1,2,3")
    assert (variables["RANK"], variables["LOCAL_RANK"], variables["WORLD_SIZE"]) == ("5", "1", "8")
    assert (variables["LOCAL_WORLD_SIZE"], variables["MASTER_ADDR"]) == ("4", "gpu07")
    assert variables["CUDA_VISIBLE_DEVICES"] == "1"


@pytest.mark.parametrize("job_id", ["1", "4242", "123_7", "99999999"])
def test_the_port_comes_from_the_job_id_and_neighbouring_jobs_never_share_one(job_id: str) -> None:
    port = master_port(job_id)
    assert PORT_BASE <= port < PORT_BASE + PORT_SPAN < 32768
    assert port == master_port(job_id)
    digits = int(job_id.replace("_", ""))
    assert len({master_port(str(digits + step)) for step in range(100)}) == 100


def test_a_local_trial_of_two_tasks_trains_data_parallel_as_one_task_does(tmp_path: Path) -> None:
    """The built-in trainer in a `local` job of tasks_per_node = 2: two ranks (gloo) with torchrun's
    variables, one metrics line per epoch (rank 0's), the numbers of the one-task trial."""
    train = TINY_TRAIN | {"loader": "gpu", "batch_size": 48, "epochs": 1}  # same draws on every rank
    numbers = {}
    for tasks in (1, 2):
        path = write_study(
            tmp_path / f"ddp{tasks}.toml",
            study={"name": f"ddp{tasks}", "sampler": "grid"},
            space={"lr": [0.05]},
            train=train,
            resources=TINY_RESOURCES | {"tasks_per_node": tasks},
        )
        results = tmp_path / f"results{tasks}"
        launch(load_study(path), results_dir=results, executor="local", read_every_s=0.1, out=lambda _: None)
        (trial,) = optuna.load_study(
            study_name=f"ddp{tasks}", storage=f"sqlite:///{results / 'sweep.db'}"
        ).get_trials()
        assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("traceback")
        run_dir = Path(trial.user_attrs["run_dir"])
        (numbers[tasks],) = read_epochs(RunPaths(run_dir).metrics)
        logs = sorted(path.name for path in (run_dir / "submitit").glob("*_log.out"))
        assert len(logs) == tasks  # one output per task
    for key in ("train_loss", "val_loss", "val_acc"):
        assert numbers[2][key] == pytest.approx(numbers[1][key], rel=1e-4, abs=1e-5), key


def _fake_sinfo(fake_slurm: Path, out: str) -> None:
    script = fake_slurm / "sinfo"
    script.write_text(f'#!/bin/sh\necho "$@" >> {fake_slurm}/sinfo.calls\nprintf "{out}"\n')
    script.chmod(0o755)


def test_more_nodes_than_the_partition_has_is_one_error_line_before_anything_runs(
    tmp_path: Path, fake_slurm: Path
) -> None:
    _fake_sinfo(fake_slurm, "1 debug*\\n2 debug*\\n4 gpu\\n")  # 3 nodes in the default, in two states
    study = write_study(
        tmp_path / "big.toml",
        study={"name": "big", "sampler": "grid"},
        space={"lr": [0.1]},
        resources={**TINY_RESOURCES, "nodes": 4},
    )
    with pytest.raises(SweepError) as err:
        launch(load_study(study), results_dir=tmp_path / "results", executor="slurm", out=lambda _: None)
    assert str(err.value) == (
        "[resources] nodes = 4, but the default partition has 3 nodes (sinfo); lower nodes or choose a "
        "larger [resources] partition"
    )
    assert (fake_slurm / "sinfo.calls").read_text().count("\n") == 1  # asked once
    assert not (fake_slurm / "sbatch.calls").exists()
    assert not (tmp_path / "results" / "sweep.db").exists()  # nothing stored
    assert partition_nodes("gpu") is not None  # a named partition's own count


def test_the_partitions_nodes_come_from_sinfo_and_an_unanswered_sinfo_leaves_the_check_to_sbatch(
    fake_slurm: Path,
) -> None:
    _fake_sinfo(fake_slurm, "1 debug*\\n2 debug*\\n4 gpu\\n")
    assert partition_nodes(None) == 3
    _fake_sinfo(fake_slurm, "garbage\\n")
    assert partition_nodes(None) is None
