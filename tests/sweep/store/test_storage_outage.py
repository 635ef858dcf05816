"""A study database that stops answering is waited for: SQLite locked past its busy timeout, a
PostgreSQL server stopped and started again mid-study, a commit whose answer was lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from sweep._compat import rdb_storage
from sweep.errors import SweepError
from sweep.launcher import prepare
from sweep.store.outage import StorageOutage, unreachable
from sweep.store.records import TrialRecord
from sweep.store.storage import default_url, open_storage
from sweep.study import load_study
from tests.conftest import deadline
from tests.sweep.conftest import ROOT, run_sweep, sweep_cmd
from tests.sweep.store.test_claims import postgres_databases  # noqa: F401 (a fixture)

REFUSED = sa.exc.OperationalError(
    "SELECT 1", {}, Exception('connection to server at "127.0.0.1", port 5432 failed: Connection refused')
)


def test_what_an_unreachable_database_says_is_told_apart_from_other_errors() -> None:
    assert unreachable(REFUSED) is not None
    locked = sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    assert unreachable(locked) == "database is locked"
    try:  # the way Optuna wraps a failed commit: the cause is in the chain
        try:
            raise REFUSED
        except sa.exc.OperationalError as err:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from err
    except optuna.exceptions.StorageInternalError as wrapped:
        assert unreachable(wrapped) is not None
    assert unreachable(sa.exc.OperationalError("SELECT", {}, Exception("no such table: trials"))) is None
    assert unreachable(ValueError("bad value")) is None


def test_an_outage_is_waited_for_with_one_line_at_its_start_and_one_at_its_end() -> None:
    lines: list[str] = []
    waits: list[float] = []
    outage = StorageOutage(600, lines.append, sleep=waits.append)
    failures = [REFUSED, REFUSED, REFUSED]

    def action() -> str:
        if failures:
            raise failures.pop()
        return "done"

    assert outage.call(action) == "done"
    assert waits == [1.0, 2.0, 4.0]  # back-off
    assert len(lines) == 2 and lines[0].startswith("storage: the database does not answer (connection to")
    assert lines[1].startswith("storage: the database answers again after")
    assert outage.call(lambda: "fine") == "fine" and len(lines) == 2  # no outage: nothing said


def test_a_call_whose_answer_was_lost_after_it_committed_is_checked_not_repeated() -> None:
    outage = StorageOutage(600, lambda _: None, sleep=lambda _: None)
    made: list[int] = []

    def create() -> int:  # commits, then loses its answer
        made.append(len(made))
        raise REFUSED

    assert outage.call(create, check=lambda: made[-1] if made else None) == 0
    assert made == [0]  # created once


def test_an_outage_longer_than_allowed_ends_with_one_line() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    outage = StorageOutage(60, lambda _: None, sleep=sleep, clock=lambda: now[0])

    def down() -> None:
        raise REFUSED

    with pytest.raises(SweepError, match=r"did not answer for \d+ s .*storage_outage_min") as err:
        outage.call(down)
    assert "\n" not in str(err.value)


# The allowed time on its boundary, on a given clock: the database fails at 0 s and again `fails_at_s`
# later, then answers. Allowed 600 s (10 minutes): a failure 599.5 s into the outage is waited out, one at
# 600 s ends it. Written out, so a limit moved by a second, 60 times off, or `>=` turned into `>` fails.
@pytest.mark.parametrize(
    ("fails_at_s", "gives_up"), [(10.0, False), (599.5, False), (600.0, True), (600.5, True)]
)
def test_an_outage_is_waited_out_for_the_allowed_seconds_and_no_longer(
    fails_at_s: float, gives_up: bool
) -> None:
    now = [0.0]
    failures = [0.0, fails_at_s]

    def action() -> str:
        if failures:
            now[0] = failures.pop(0)
            raise REFUSED
        return "back"

    lines: list[str] = []
    outage = StorageOutage(600, lines.append, sleep=lambda _: None, clock=lambda: now[0])
    if gives_up:
        with pytest.raises(SweepError, match=rf"did not answer for {fails_at_s:.0f} s "):
            outage.call(action)
    else:
        assert outage.call(action) == "back"
        assert lines[1] == f"storage: the database answers again after {fails_at_s:.0f} s"
    assert lines[0].endswith("; waiting up to 10 min")


def test_a_database_that_stays_away_is_given_up_on_within_one_wait_of_the_allowed_time() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    def down() -> None:
        raise REFUSED

    outage = StorageOutage(600, lambda _: None, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(SweepError, match=r"did not answer for 601 s "):
        outage.call(down)
    assert waits[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]  # back-off, at most 30 s apart
    assert sum(waits[:-1]) < 600 <= sum(waits) == 601  # given up at the first try past 10 minutes


@pytest.mark.parametrize("table", ["waits", "launcher"])  # [launcher]: its old home, still read
def test_a_launch_waits_out_storage_outage_min_in_minutes(tmp_path: Path, table: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        f'[study]\nname = "s"\nsampler = "grid"\n[space]\nlr = [0.1]\n[{table}]\nstorage_outage_min = 0.5\n'
        f'[program]\ncommand = ["{sys.executable}", "-c", "pass"]\n[resources]\ngpus = 0\ncpus = 1\n'
    )
    spec = load_study(path)
    assert spec.waits.storage_outage_min == 0.5
    prepared = prepare(spec, results_dir=tmp_path / "results", executor="local", out=lambda _: None)
    outage = getattr(rdb_storage(prepared.study), "outage", None)
    assert isinstance(outage, StorageOutage)
    assert outage.allowed_s == 30.0  # half a minute, in seconds


def test_other_errors_are_not_waited_for() -> None:
    outage = StorageOutage(600, lambda _: None, sleep=lambda _: pytest.fail("waited"))
    with pytest.raises(ValueError):
        outage.call(lambda: (_ for _ in ()).throw(ValueError("bad")))


def test_a_trial_created_before_its_answer_was_lost_is_found_by_its_nonce_not_created_twice(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    outage = StorageOutage(600, lines.append, sleep=lambda _: None)
    storage = open_storage(default_url(tmp_path), create=True, outage=outage)
    study = optuna.create_study(study_name="s", storage=storage)
    lost = [True]

    @sa.event.listens_for(storage.scoped_session.session_factory, "after_commit")
    def lose_the_answer(session: sa.orm.Session) -> None:
        if lost:  # the trial's row is committed; its answer does not come back
            lost.clear()
            raise OSError("server closed the connection unexpectedly")

    trial = study.ask()
    assert not lost  # the fault happened
    assert [t.number for t in study.get_trials(deepcopy=False)] == [trial.number]
    assert len(lines) == 2


PROGRAM = """\
import json, os, sys, time
for epoch in (1, 2, 3):
    time.sleep(0.7)
    with open(os.path.join(os.environ["SWEEP_RUN_DIR"], "metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "val_acc": float(sys.argv[1]) * epoch}) + "\\n")
"""


def _study_file(folder: Path, name: str, values: list[float]) -> Path:
    (folder / "prog.py").write_text(PROGRAM)
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\nsampler = "grid"\nmetric = "val_acc"\n[train]\nepochs = 3\n'
        f"[space]\nlr = {values}\n[resources]\ngpus = 0\ncpus = 1\n"
        f'[program]\ncommand = ["{sys.executable}", "{folder / "prog.py"}", "{{lr}}"]\n'
    )
    return path


def _postgres(command: str) -> None:
    script = str(ROOT / "scripts" / "postgres-dev.sh")
    subprocess.run(["bash", script, command], check=True, timeout=deadline(120), capture_output=True)


def _outages(out: str) -> int:
    return out.count("storage: the database does not answer")


def _each_ran_once(url: str, name: str, count: int, out: str) -> None:
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * count, out
    assert len({t.params["lr"] for t in trials}) == count, out  # no configuration twice
    assert [TrialRecord.of(t).submissions for t in trials] == [1] * count, out


@pytest.mark.slow
def test_a_launch_rides_out_sqlite_locked_past_its_busy_timeout(tmp_path: Path) -> None:
    path = _study_file(tmp_path, "locked", [0.1, 0.2, 0.3, 0.4])
    results = tmp_path / "results"
    args = ("launch", "--study", str(path), "--executor", "local", "--parallel", "2")
    launcher = subprocess.Popen(
        sweep_cmd(*args, "--results-dir", str(results)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert launcher.stdout is not None
    lines = []
    for line in launcher.stdout:  # trials run: another process locks the database for 8 s
        lines.append(line)
        if "epoch 1/3" in line:
            break
    holder = sqlite3.connect(results / "sweep.db", timeout=30)
    holder.execute("BEGIN EXCLUSIVE")
    time.sleep(8)  # past SQLite's busy timeout of 5 s
    holder.rollback()
    holder.close()
    rest, _ = launcher.communicate(timeout=deadline(300))
    out = "".join(lines) + rest
    assert launcher.returncode == 0, out
    assert "storage: the database does not answer (database is locked)" in out, out
    assert _outages(out) == out.count("storage: the database answers again"), out
    _each_ran_once(default_url(results), "locked", 4, out)


@pytest.mark.slow
@pytest.mark.cluster_fault  # the server is shared: no other test may use it meanwhile
def test_a_launch_rides_out_postgresql_restarted_twice(
    tmp_path: Path,
    postgres_databases: list[str],  # noqa: F811
) -> None:
    url = postgres_databases[0]
    path = _study_file(tmp_path, "pgrestart", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    args = ("launch", "--study", str(path), "--executor", "local", "--parallel", "2", "--storage", url)
    launcher = subprocess.Popen(
        sweep_cmd(*args, "--results-dir", str(tmp_path / "results")),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert launcher.stdout is not None
    lines = []
    restarts = 0
    for line in launcher.stdout:  # restart the server under it twice, each time while trials run
        lines.append(line)
        if "epoch 2/3" in line and restarts < 2:
            restarts += 1
            _postgres("stop")  # down for 4 s: epochs come every 0.7 s, each one a write
            time.sleep(4)
            _postgres("start")
    rest, _ = launcher.communicate(timeout=deadline(300))
    out = "".join(lines) + rest
    assert restarts == 2 and launcher.returncode == 0, out
    _each_ran_once(url, "pgrestart", 6, out)
    assert _outages(out) == out.count("storage: the database answers again"), out
    assert _outages(out) >= 1, out  # seen and ridden out (two stops close together are one outage)
    report = run_sweep("report", "--study", "pgrestart", "--storage", url, "--results-dir", str(tmp_path))
    assert report.returncode == 0, report.stderr
