"""Trials of several ranks on the real dev cluster of two nodes (scripts/slurm-dev-cluster.sh): two ranks
on one node, and one rank on each of two nodes. Each rank of a user's program meets the others with
`torch.distributed.init_process_group("gloo")` (env://, from the variables sweep gives it), all-reduces
its rank, writes a rank file, and logs every epoch with `sweep.log_epoch`: only rank 0's lines land."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import optuna
import pytest

from sweep.executors.slurm_queries import partition_nodes
from tests.conftest import deadline
from tests.sweep.conftest import TEST_WAITS_TOML, run_sweep, wait_for
from tests.sweep.executors.test_slurm import (  # noqa: F401 (slurm_cluster, study_jobs: fixtures)
    now_for_sacct,
    sacct_jobs,
    slurm_cluster,
    stored_trials,
    study_jobs,
)

pytestmark = pytest.mark.slow  # real jobs on a real cluster
EPOCHS = 2

# Every rank: the process group (gloo, env://), an all-reduce of rank + 1, its rank file, then EPOCHS
# epochs logged by every rank (a barrier first: the ranks go in step). score = the all-reduced sum x epoch.
DDP_PY = f"""\
import datetime, json, os, pathlib, socket
import torch
import torch.distributed as dist
from sweep import log_epoch

run = pathlib.Path(os.environ["SWEEP_RUN_DIR"])
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
seen = {{
    "rank": rank, "world": world, "sum": total.item(), "hostname": socket.gethostname(),
    "node": os.environ.get("SLURMD_NODENAME"), "local_rank": os.environ["LOCAL_RANK"],
    "master_addr": os.environ["MASTER_ADDR"], "master_port": os.environ["MASTER_PORT"],
}}
(run / f"rank-{{rank}}.txt").write_text(json.dumps(seen))
for epoch in range(1, {EPOCHS} + 1):
    dist.barrier()
    log_epoch(epoch, score=total.item() * epoch)
dist.barrier()
dist.destroy_process_group()
"""


def _ddp_study(folder: Path, name: str, nodes: int, tasks_per_node: int) -> Path:
    (folder / "ddp.py").write_text(DDP_PY)
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        f"[space]\nlr = [0.1]\n[resources]\ngpus = 0\ncpus = 1\nnodes = {nodes}\n"
        f"tasks_per_node = {tasks_per_node}\ntimeout_min = 10\n{TEST_WAITS_TOML}"
        f'[program]\ncommand = ["{sys.executable}", "ddp.py"]\nstop_grace_s = 1\n'
    )
    return path


def _outputs(run_dir: Path) -> str:
    """Every rank's program output and the job's logs, for a failed assertion's message."""
    files = sorted(run_dir.glob("program.*.out")) + sorted((run_dir / "submitit").glob("*_log.*"))
    return "\n".join(f"--- {path.name}\n{path.read_text()}" for path in files)


@pytest.mark.parametrize(
    ("nodes", "tasks_per_node"), [(1, 2), (2, 1)], ids=["2-ranks-on-one-node", "1x2-on-two-nodes"]
)
def test_a_trial_of_two_ranks_all_reduces_over_gloo_and_logs_one_line_per_epoch(
    tmp_path: Path,
    study_jobs: list[str],  # noqa: F811 (the fixture imported above)
    nodes: int,
    tasks_per_node: int,
) -> None:
    offered = partition_nodes(None) or 0
    if offered < nodes:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the dev cluster's default partition has {offered} node(s); CI needs {nodes}")
        pytest.skip(f"the SLURM cluster's default partition has {offered} node(s), not {nodes}")
    name = f"ddp{nodes}x{tasks_per_node}"
    study_jobs.append(name)
    since = now_for_sacct()
    path = _ddp_study(tmp_path, name, nodes, tasks_per_node)
    results = tmp_path / "results"
    done = run_sweep(
        "launch", "--study", str(path), "--executor", "slurm", "--results-dir", str(results),
        timeout=deadline(300),
    )  # fmt: skip
    run_dir = results / "runs" / name / "0"
    assert done.returncode == 0, done.stdout + done.stderr + _outputs(run_dir)
    (trial,) = stored_trials(results, name)
    assert trial.state == optuna.trial.TrialState.COMPLETE, done.stdout + _outputs(run_dir)
    world = nodes * tasks_per_node
    total = world * (world + 1) / 2  # the all-reduced sum of rank + 1 over every rank
    assert trial.value == pytest.approx(total * EPOCHS)

    ranks = [json.loads((run_dir / f"rank-{rank}.txt").read_text()) for rank in range(world)]
    assert [seen["rank"] for seen in ranks] == list(range(world))
    assert all(seen["world"] == world and seen["sum"] == total for seen in ranks), ranks
    assert len({seen["master_port"] for seen in ranks}) == 1, ranks
    assert len({seen["node"] for seen in ranks}) == nodes, ranks  # SLURMD_NODENAME: one per node
    if nodes == 1:
        assert {seen["master_addr"] for seen in ranks} == {"127.0.0.1"}
        assert sorted(seen["local_rank"] for seen in ranks) == ["0", "1"]
    else:  # they meet at the first node, each rank the first (local rank 0) of its own node
        assert {seen["master_addr"] for seen in ranks} == {ranks[0]["node"]}, ranks
        assert {seen["local_rank"] for seen in ranks} == {"0"}

    (attempt,) = json.loads((run_dir / "manifest.json").read_text())["attempts"]  # rank 0's record
    assert attempt["ranks"] == world and attempt["slurm_node"] == ranks[0]["node"], attempt
    assert sorted(attempt["job_nodes"].split(",")) == sorted({seen["node"] for seen in ranks}), attempt

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, EPOCHS + 1)), lines  # rank 0's
    assert [json.loads(line)["score"] for line in lines] == [total * epoch for epoch in range(1, EPOCHS + 1)]

    job_id = str(trial.user_attrs["job_id"])

    def accounted() -> dict[str, str]:
        return next((job for job in sacct_jobs(since, "NNodes", "State") if job["JobID"] == job_id), {})

    wait_for(lambda: accounted().get("State") == "COMPLETED", timeout=deadline(30), what="sacct's record")
    assert accounted()["NNodes"] == str(nodes)
