"""One fate for a trial's ranks (`[resources] tasks_per_node` > 1) under the `local` executor: a rank that
fails ends the job at once and fails it with its own error; a prune or cancel stops every rank; a job
started again restarts every rank, which resume from rank 0's checkpoint. Each checked by pid."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from submitit.core.utils import cloudpickle_dump

from sweep import procs
from sweep._compat.local_controller import FIRST_FAILURE, first_failure
from sweep.executors.base import Job, RankEnd, job_outcome
from sweep.executors.local import LocalExecutor
from sweep.executors.program import ProgramJob
from sweep.store.records import failure_line
from sweep.study.spec import Program, Resources
from tests.conftest import deadline
from tests.sweep.conftest import run_sweep, sweep_main, wait_for
from trainer.metrics import read_epochs

# Each rank's program: its pid and its job's (the task's) in pids.RANK, a line on stdout, then by mode:
# fail (rank 1 fails once rank 0 runs; rank 0 hangs, as in an all-reduce whose peer died), deaf (rank 1
# ignores SIGTERM), or run (sleeps). Rank 0's stderr says "Connection reset by peer": a sibling's noise,
# never the trial's reason.
RANKS_PY = """\
import os, pathlib, signal, sys, time
run, rank = pathlib.Path(os.environ["SWEEP_RUN_DIR"]), os.environ["RANK"]
print(f"rank {rank} of {os.environ['WORLD_SIZE']} restart {os.environ['SWEEP_RESTART']}", flush=True)
if rank == "0":
    print("RuntimeError: Connection reset by peer", file=sys.stderr, flush=True)
mode = sys.argv[1]
if mode == "deaf" and rank == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
(run / f"pids.{rank}").write_text(f"{os.getpid()} {os.getppid()}")
if mode == "fail" and rank == "1":
    while not (run / "pids.0").exists():
        time.sleep(0.05)
    print("ValueError: rank 1 broke", file=sys.stderr, flush=True)
    sys.exit(3)
time.sleep(600)
"""
# Resumes from checkpoint.json, which rank 0 alone writes, every rank once all have read it (as
# init_process_group waits for every rank); the first start stops after epoch 1.
RESUME_PY = """\
import json, os, pathlib, time
run, rank = pathlib.Path(os.environ["SWEEP_RUN_DIR"]), os.environ["RANK"]
restart, checkpoint = os.environ["SWEEP_RESTART"], run / "checkpoint.json"
start = json.loads(checkpoint.read_text())["epoch"] if checkpoint.exists() else 0
print(f"rank {rank} restart {restart} resumes after epoch {start}", flush=True)
(run / f"ready.{restart}.{rank}").write_text("")
while not all((run / f"ready.{restart}.{r}").exists() for r in range(int(os.environ["WORLD_SIZE"]))):
    time.sleep(0.05)
for epoch in range(start + 1, 4):
    if rank == "0":  # atomically: the other rank may read it at once
        (run / "checkpoint.tmp").write_text(json.dumps({"epoch": epoch}))
        os.replace(run / "checkpoint.tmp", checkpoint)
        with open(run / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"epoch": epoch, "score": epoch}) + "\\n")
    if restart == "0":
        time.sleep(600)  # killed here
"""
RANKS = 2


def _program(folder: Path, script: str, *args: str, grace_s: float = 1.0) -> Program:
    (folder / "ranks.py").write_text(script)
    return Program(command=(sys.executable, "ranks.py", *args), workdir=str(folder), stop_grace_s=grace_s)


def _submit(folder: Path, program: Program) -> tuple[Job, Path]:
    run_dir = folder / "runs" / "ranks" / "0"
    run_dir.mkdir(parents=True)
    executor = LocalExecutor(Resources(gpus=0, tasks_per_node=RANKS))
    return executor.submit(ProgramJob(program, "score"), {"lr": 0.1}, run_dir), run_dir


def _pids(run_dir: Path) -> list[int]:
    """Every rank's program and job (task) pids, once every rank has written them."""
    wait_for(
        lambda: all((run_dir / f"pids.{rank}").exists() for rank in range(RANKS)),
        timeout=deadline(60),
        what="every rank to start",
    )
    return [int(pid) for rank in range(RANKS) for pid in (run_dir / f"pids.{rank}").read_text().split()]


def _none_alive(pids: list[int]) -> bool:
    return not any(procs.alive(pid) for pid in pids)


def test_a_rank_that_fails_stops_the_other_at_once_and_the_job_fails_with_that_ranks_error(
    no_leftovers: Path,
) -> None:
    job, run_dir = _submit(no_leftovers, _program(no_leftovers, RANKS_PY, "fail"))
    pids = _pids(run_dir)
    started = time.monotonic()
    wait_for(job.done, timeout=deadline(30), what="the job to end with its failed rank")
    print(f"ended {time.monotonic() - started:.1f} s after both ranks ran")
    wait_for(lambda: _none_alive(pids), timeout=deadline(10), what="no rank left running")
    outcome = job.outcome()
    assert outcome.status == "error"
    line = failure_line(outcome.detail)
    assert line.startswith("rank 1: "), line
    assert line.endswith(" exited with status 3: ValueError: rank 1 broke"), line
    # each rank's output is its own: rank 0's noise is in its file, not in rank 1's reason
    assert "Connection reset" in (run_dir / "program.0.err").read_text()
    assert (run_dir / "program.0.out").read_text() == "rank 0 of 2 restart 0\n"
    assert (run_dir / "program.0.rank1.out").read_text() == "rank 1 of 2 restart 0\n"
    assert "ValueError" not in (run_dir / "program.0.err").read_text()
    assert (
        "rank 1 exited with status 1; stopping the other ranks"
        in (run_dir / "submitit" / "controller.log").read_text()
    )


def rank_1_fails(config: dict[str, Any], run_dir: str) -> None:
    """A job of several tasks without sweep's wrapper: once both run, rank 1 raises (or, `config["how"]`
    "sigkill", is killed as the out-of-memory killer kills); rank 0 is deaf to SIGTERM (a rank stuck in
    C code) and hangs, or (`config["noise"]`) fails once rank 1 is gone, as a collective does when its
    peer died."""
    rank = int(os.environ["SUBMITIT_LOCAL_GLOBALID"])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    folder = Path(run_dir)
    (folder / f"task.{rank}.tmp").write_text(str(os.getpid()))
    (folder / f"task.{rank}.tmp").rename(folder / f"task.{rank}")
    wait_for(lambda: all((folder / f"task.{k}").exists() for k in (0, 1)), timeout=60, what="both ranks")
    if rank == 1 and config["how"] == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if rank == 1:
        raise ValueError("rank 1 broke")
    if config["noise"]:
        peer = int((folder / "task.1").read_text())
        wait_for(lambda: not procs.alive(peer), timeout=60, what="rank 1 to die")
        raise ConnectionResetError("Connection reset by peer")
    time.sleep(600)


@pytest.mark.parametrize(
    ("how", "noise"),
    [("raise", False), ("raise", True), ("sigkill", True)],
    ids=["deaf-rank-0", "rank-0-fails-after", "rank-1-killed"],
)
def test_the_first_rank_to_fail_names_the_jobs_end_and_a_deaf_rank_is_killed(
    no_leftovers: Path, how: str, noise: bool
) -> None:
    run_dir = no_leftovers / "run"
    executor = LocalExecutor(Resources(gpus=0, tasks_per_node=RANKS))
    job = executor.submit(rank_1_fails, {"how": how, "noise": noise}, run_dir)
    wait_for((run_dir / "task.0").exists, timeout=deadline(60), what="rank 0")
    rank_0 = int((run_dir / "task.0").read_text())
    wait_for(job.done, timeout=deadline(30), what="the job to end")  # SIGKILL after the 5 s grace
    assert not procs.alive(rank_0)
    outcome = job.outcome()
    if how == "raise":
        assert (
            outcome.status == "error" and failure_line(outcome.detail) == "rank 1: ValueError: rank 1 broke"
        )
    else:  # no result of its own: lost, as a job of one task the out-of-memory killer took
        assert outcome.status == "lost" and not outcome.killed
        assert outcome.detail.startswith(f"rank 1 was killed by SIGKILL (job {job.job_id}); see "), outcome
    # rank 0's own error was stored too, after rank 1's end: not the job's
    assert (run_dir / "submitit" / f"{job.job_id}_0_result.pkl").exists() == noise


def test_the_outcome_is_task_0s_success_or_the_oldest_error_of_any_task(tmp_path: Path) -> None:
    def store(task: int, status: str, value: str, stamp: int) -> None:
        path = tmp_path / f"77_{task}_result.pkl"
        cloudpickle_dump((status, value), path)
        os.utime(path, ns=(stamp, stamp))

    def outcome(job_id: str = "77") -> tuple[str, str] | None:
        found = job_outcome(tmp_path, job_id)
        return None if found is None else (found.status, found.detail)

    assert outcome() is None
    store(2, "error", "Traceback\nRuntimeError: Connection reset by peer", 3_000_000_000)
    store(1, "error", "Traceback\nValueError: rank 1 broke", 2_000_000_000)
    assert outcome() == ("error", "Traceback\nrank 1: ValueError: rank 1 broke")
    assert failure_line(outcome()[1]) == "rank 1: ValueError: rank 1 broke"  # type: ignore[index]
    store(0, "error", "Traceback\nOSError: late", 4_000_000_000)  # task 0's own error, after rank 1's
    assert outcome() == ("error", "Traceback\nrank 1: ValueError: rank 1 broke")
    store(0, "error", "Traceback\nOSError: first", 1_000_000_000)  # rank 0 first: its error, as one task's
    assert outcome() == ("error", "Traceback\nOSError: first")
    store(0, "success", "done", 5_000_000_000)
    assert outcome() == ("success", "")
    assert outcome("7") is None  # another job's files are not this one's


def test_the_rank_its_controller_says_failed_first_names_the_outcome(tmp_path: Path) -> None:
    """What ran the ranks (the local controller, srun) says which failed first: its error, else how it
    ended (a rank the out-of-memory killer took stored nothing; another's noise came after)."""
    cloudpickle_dump(
        ("error", "Traceback\nRuntimeError: Connection closed by peer"), tmp_path / "9_0_result.pkl"
    )
    killed, exited = RankEnd(1, "was killed by SIGKILL", True), RankEnd(1, "exited with status 3", False)
    lost = job_outcome(tmp_path, "9", killed)
    assert lost is not None and lost.status == "lost"
    assert lost.detail == f"rank 1 was killed by SIGKILL (job 9); see {tmp_path}/9_1_log.err without a result"
    failed = job_outcome(tmp_path, "9", exited)
    assert failed is not None and (failed.status, failed.detail) == (
        "error", f"rank 1 exited with status 3 (job 9); see {tmp_path}/9_1_log.err"
    )  # fmt: skip
    cloudpickle_dump(("error", "Traceback\nValueError: rank 1 broke"), tmp_path / "9_1_result.pkl")
    own = job_outcome(tmp_path, "9", exited)  # its own error, though stored after rank 0's
    assert own is not None and own.detail == "Traceback\nrank 1: ValueError: rank 1 broke"
    zero = job_outcome(tmp_path, "9", RankEnd(0, "exited with status 1", False))
    assert zero is not None and zero.detail.endswith("\nRuntimeError: Connection closed by peer")


def test_the_local_controllers_line_names_its_job_and_rank() -> None:
    log = "\n".join(
        FIRST_FAILURE.format(job=job, rank=rank, code=code) for job, rank, code in ((41, 1, -9), (42, 2, 3))
    )
    assert first_failure(log + "\n", "41") == (1, -9)
    assert first_failure(log, "42") == (2, 3)
    assert first_failure(log, "4") is None


@pytest.mark.parametrize("stop", ["cancel", "stop_soon"])
def test_a_cancelled_or_pruned_trial_stops_every_rank_even_one_deaf_to_sigterm(
    no_leftovers: Path, stop: str
) -> None:
    job, run_dir = _submit(no_leftovers, _program(no_leftovers, RANKS_PY, "deaf"))
    pids = _pids(run_dir) + [int(job.job_id)]
    getattr(job, stop)()  # cancel: `sweep cancel`, a diverged trial; stop_soon: a prune
    wait_for(lambda: _none_alive(pids), timeout=deadline(30), what="every rank to be stopped")
    assert job.done()


def test_ranks_whose_jobs_were_killed_are_stopped_when_the_job_is_seen_done(no_leftovers: Path) -> None:
    """Every rank's program keeps its own process group file: a job killed before it could stop its
    program leaves the program to the launcher, which stops each rank's."""
    job, run_dir = _submit(no_leftovers, _program(no_leftovers, RANKS_PY, "run"))
    pids = _pids(run_dir)
    programs, tasks = pids[0::2], pids[1::2]
    for task in tasks:
        os.kill(task, signal.SIGKILL)
    wait_for(job.done, timeout=deadline(30), what="the job to end")
    assert _none_alive(programs)  # done() stops what is left before it says so


def test_a_job_killed_and_started_again_restarts_every_rank_from_rank_0s_checkpoint(
    no_leftovers: Path,
) -> None:
    program = _program(no_leftovers, RESUME_PY)
    job, run_dir = _submit(no_leftovers, program)
    wait_for(lambda: read_epochs(run_dir / "metrics.jsonl"), timeout=deadline(60), what="epoch 1")
    wait_for(lambda: (run_dir / "program.0.rank1.out").exists(), timeout=deadline(30), what="rank 1")
    os.kill(int(job.job_id), signal.SIGKILL)  # `kill -9` of the job: the launcher resubmits it
    wait_for(job.done, timeout=deadline(30), what="the killed job to be done")
    again = LocalExecutor(Resources(gpus=0, tasks_per_node=RANKS)).submit(
        ProgramJob(program, "score"), {"lr": 0.1}, run_dir
    )
    wait_for(again.done, timeout=deadline(60), what="the job started again")
    assert again.outcome().status == "success", again.outcome().detail
    assert [epoch["epoch"] for epoch in read_epochs(run_dir / "metrics.jsonl")] == [1, 2, 3]
    for rank, name in ((0, "program.{}.out"), (1, "program.{}.rank1.out")):
        assert (run_dir / name.format(0)).read_text() == f"rank {rank} restart 0 resumes after epoch 0\n"
        assert (run_dir / name.format(1)).read_text() == f"rank {rank} restart 1 resumes after epoch 1\n"


def test_a_launched_trial_of_two_ranks_fails_with_its_failed_ranks_line_and_logs_show_rank_0(
    no_leftovers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _program(no_leftovers, RANKS_PY)
    study = no_leftovers / "ranks.toml"
    study.write_text(
        '[study]\nname = "ranks"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        "[space]\nlr = [0.1]\n[resources]\ngpus = 0\ncpus = 1\ntasks_per_node = 2\n"
        f'[program]\ncommand = ["{sys.executable}", "ranks.py", "fail"]\nstop_grace_s = 1\n'
    )
    results = str(no_leftovers / "results")
    done = run_sweep("launch", "--study", str(study), "--executor", "local", "--results-dir", results)
    assert "trial 0 failed: rank 1: " in done.stdout, done.stdout + done.stderr
    assert "exited with status 3: ValueError: rank 1 broke (full text" in done.stdout
    logs = sweep_main(capsys, "logs", "--study", "ranks", "--trial", "0", "--results-dir", results)
    assert logs.returncode == 0, logs.stderr
    assert "rank 0 of 2 restart 0" in logs.stdout and "rank 1" not in logs.stdout
