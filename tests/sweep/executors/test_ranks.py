"""torchrun's variables for each task of a trial of several (`sweep.executors.ranks`)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from submitit.slurm.slurm import SlurmJobEnvironment

from sweep import procs
from sweep.errors import SweepError
from sweep.executors.base import RankEnd
from sweep.executors.ranks import PORT_BASE, PORT_SPAN, forget_earlier_result, master_port, torch_variables
from sweep.executors.slurm import SRUN_STEP_ENDED, srun_first_failure
from sweep.executors.slurm_queries import partition_nodes
from sweep.launcher import launch
from sweep.study import load_study
from tests.conftest import deadline
from tests.sweep.conftest import (
    ROOT,
    TEST_WAITS_TOML,
    TINY_RESOURCES,
    TINY_TRAIN,
    run_sweep,
    sweep_cmd,
    wait_for,
    write_study,
)
from tests.sweep.executors.test_rank_fate import RANKS_PY, RESUME_PY
from tests.sweep.executors.test_slurm import (  # noqa: F401 (slurm_cluster, study_jobs: fixtures)
    slurm_cluster,
    study_jobs,
)
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


@pytest.mark.slow
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


# srun's words in a job's stderr (task 0's log) on the dev cluster: an attempt requeued (rank 0 exits
# 255 after `scontrol requeue`), then one whose rank 1 the out-of-memory killer took
SRUN_REQUEUED_THEN_KILLED = """\
srun: error: vm: task 0: Exited with exit code 255
srun: launch/slurm: _step_signal: Terminating StepId=481.0
srun: error: vm: task 1: Exited with exit code 143
submitit WARNING (2026-12-07 11:53:11,348) - Bypassing signal SIGCONT
srun: error: vm: task 1: Killed
srun: launch/slurm: _step_signal: Terminating StepId=481.0
slurmstepd-vm: error: *** STEP 481.0 ON vm CANCELLED AT 2026-12-07T11:53:15 ***
srun: error: vm: task 0: Exited with exit code 143
Traceback (most recent call last):
RuntimeError: Connection closed by peer
srun: Force Terminated StepId=481.0
"""


def test_srun_says_which_task_failed_first_in_the_jobs_last_attempt(tmp_path: Path) -> None:
    stderr = tmp_path / "481_0_log.err"
    stderr.write_text(SRUN_REQUEUED_THEN_KILLED)
    assert srun_first_failure(stderr) == RankEnd(1, "was killed (Killed)", signalled=True)
    stderr.write_text("srun: error: vm: tasks 2-3: Exited with exit code 3\n" + SRUN_STEP_ENDED + "481.0\n")
    assert srun_first_failure(stderr) == RankEnd(2, "exited with exit code 3", signalled=False)
    stderr.write_text("srun: error: vm: task 1: Exited with exit code 143\n" + SRUN_STEP_ENDED + "481.0\n")
    assert srun_first_failure(stderr) == RankEnd(1, "exited with exit code 143", signalled=True)  # SIGTERM
    stderr.write_text("srun: error: vm: task 1: Killed\n")  # no step ended by srun (one task): not a rank's
    assert srun_first_failure(stderr) is None
    assert srun_first_failure(tmp_path / "missing.err") is None


def test_a_requeued_rank_forgets_the_result_its_earlier_attempt_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLURM runs a requeued job again under its id: rank 1's error of the attempt before is not this
    attempt's, and the job's outcome reads every rank's (rank 0's is judged as the job's own)."""
    monkeypatch.setenv("SUBMITIT_FOLDER", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    for rank in (0, 1):
        (tmp_path / f"4242_{rank}_result.pkl").write_text("stale")
    for tasks, rank in ((1, 0), (2, 0), (2, 1)):
        monkeypatch.setenv("SLURM_NTASKS", str(tasks))
        monkeypatch.setenv("SLURM_PROCID", str(rank))
        forget_earlier_result(SlurmJobEnvironment())
        assert (tmp_path / "4242_1_result.pkl").exists() == (rank == 0)
    assert (tmp_path / "4242_0_result.pkl").exists()


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


# -- one fate for a trial's ranks on the cluster (tests/sweep/executors/test_rank_fate.py: local) ----------


def _ranks_study(folder: Path, name: str, script: str, *args: str) -> Path:
    (folder / "ranks.py").write_text(script)
    command = ", ".join(f'"{arg}"' for arg in (sys.executable, "ranks.py", *args))
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        "[space]\nlr = [0.1]\n[resources]\ngpus = 0\ncpus = 1\ntasks_per_node = 2\ntimeout_min = 10\n"
        f"{TEST_WAITS_TOML}[program]\ncommand = [{command}]\nstop_grace_s = 1\n"
    )
    return path


@pytest.mark.slow
def test_a_failed_rank_on_slurm_ends_the_job_and_fails_the_trial_with_its_own_line(
    tmp_path: Path,
    study_jobs: list[str],  # noqa: F811 (the fixture imported above)
) -> None:
    study_jobs.append("rankfail")
    path = _ranks_study(tmp_path, "rankfail", RANKS_PY, "fail")
    results = tmp_path / "results"
    done = run_sweep(
        "launch", "--study", str(path), "--executor", "slurm", "--results-dir", str(results),
        timeout=deadline(300),
    )  # fmt: skip
    assert "trial 0 failed: rank 1: " in done.stdout, done.stdout + done.stderr
    assert "exited with status 3: ValueError: rank 1 broke (full text" in done.stdout, done.stdout
    assert "resuming it" not in done.stdout  # a failed rank is the trial's failure, not a lost job
    run_dir = results / "runs" / "rankfail" / "0"
    pids = [int(pid) for rank in (0, 1) for pid in (run_dir / f"pids.{rank}").read_text().split()]
    wait_for(lambda: not any(procs.alive(pid) for pid in pids), timeout=deadline(30), what="no rank left")


@pytest.mark.slow
def test_a_requeued_trial_on_slurm_restarts_every_rank_from_rank_0s_checkpoint(
    tmp_path: Path,
    study_jobs: list[str],  # noqa: F811 (the fixture imported above)
) -> None:
    study_jobs.append("rankrequeue")
    path = _ranks_study(tmp_path, "rankrequeue", RESUME_PY)
    results, log = tmp_path / "results", tmp_path / "launcher.log"
    with log.open("w") as out:
        launcher = subprocess.Popen(
            sweep_cmd("launch", "--study", str(path), "--executor", "slurm", "--results-dir", str(results)),
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    run_dir = results / "runs" / "rankrequeue" / "0"
    try:
        both = (run_dir / "metrics.jsonl", run_dir / "program.0.rank1.out")
        wait_for(lambda: all(path.exists() for path in both) and read_epochs(both[0]),
                 timeout=deadline(120), what="epoch 1 on both ranks")  # fmt: skip
        job_id = log.read_text().split(" job ")[1].split()[0]
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=deadline(30))
        assert launcher.wait(timeout=deadline(300)) == 0, log.read_text()
    finally:
        launcher.kill()
    assert "trial 0 complete" in log.read_text(), log.read_text()
    assert [epoch["epoch"] for epoch in read_epochs(run_dir / "metrics.jsonl")] == [1, 2, 3]
    for rank, name in ((0, "program.{}.out"), (1, "program.{}.rank1.out")):
        assert (run_dir / name.format(0)).read_text() == f"rank {rank} restart 0 resumes after epoch 0\n"
        assert (run_dir / name.format(1)).read_text() == f"rank {rank} restart 1 resumes after epoch 1\n"


# Every rank writes its pids (rank 1 deaf to SIGTERM); rank 0 logs a score no pruner lets through.
PRUNED_PY = """\
import json, os, pathlib, signal, time
run, rank = pathlib.Path(os.environ["SWEEP_RUN_DIR"]), os.environ["RANK"]
if rank == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
(run / f"pids.{rank}").write_text(f"{os.getpid()} {os.getppid()}")
if rank == "0":
    while not (run / "pids.1").exists():
        time.sleep(0.05)
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": 1, "score": 0.1}) + "\\n")
time.sleep(600)
"""


@pytest.mark.slow
def test_a_pruned_trial_of_two_ranks_on_slurm_leaves_no_rank_running(
    tmp_path: Path,
    study_jobs: list[str],  # noqa: F811 (the fixture imported above)
) -> None:
    study_jobs.append("rankprune")
    spec = load_study(str(_ranks_study(tmp_path, "rankprune", PRUNED_PY)))
    results, said = tmp_path / "results", []
    launch(spec, results_dir=results, executor="slurm", pruner=optuna.pruners.ThresholdPruner(lower=2.0),
           out=said.append)  # fmt: skip
    (trial,) = optuna.load_study(study_name="rankprune", storage=f"sqlite:///{results / 'sweep.db'}").trials
    assert trial.state == TrialState.PRUNED and "trial 0 pruned at epoch 1; job stopped" in said, said
    run_dir = results / "runs" / "rankprune" / "0"
    pids = [int(pid) for rank in (0, 1) for pid in (run_dir / f"pids.{rank}").read_text().split()]
    assert len(pids) == 4  # each rank's program and its task
    wait_for(lambda: not any(procs.alive(pid) for pid in pids), timeout=deadline(60), what="no rank left")
