"""metrics.jsonl as sweep reads it: bytes that are not UTF-8 skip their line, never stop status or report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.sweep.conftest import sweep_main
from tests.sweep.report_studies import Trial, epoch, make_study
from trainer.metrics import read_epochs

NOT_UTF8 = b"\xff\xfe\x98garbage\n"


def test_a_line_that_is_not_utf8_is_skipped_and_the_others_read(tmp_path: Path) -> None:
    """Fault: non-UTF-8 bytes in a trial's metrics.jsonl crashed its readers with UnicodeDecodeError."""
    path = tmp_path / "metrics.jsonl"
    first, second = json.dumps(epoch(1, 2.0, 0.1, 2.0, 0.2)), json.dumps(epoch(2, 1.0, 0.3, 1.0, 0.4))
    path.write_bytes(first.encode() + b"\n" + NOT_UTF8 + second.encode() + b"\n" + b'{"epoch": 3, \xe9}\n')
    assert [(e["epoch"], e["val_acc"]) for e in read_epochs(path)] == [(1.0, 0.2), (2.0, 0.4)]


def test_status_and_report_show_every_trial_when_a_metrics_file_has_non_utf8_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: `sweep status` and `sweep report` died on a metrics line with non-UTF-8 bytes."""
    results = tmp_path / "results"
    trials = [
        Trial({"optimizer": name}, epochs=[epoch(1, 1.0, 0.5, 1.1, acc)])
        for name, acc in (("sgd", 0.4), ("adam", 0.6))
    ]
    trials.append(Trial({"optimizer": "adagrad"}, TrialState.PRUNED, epochs=[epoch(1, 2.0, 0.1, 2.0, 0.1)]))
    make_study(results, "utf", trials)
    with (results / "runs" / "utf" / "0" / "metrics.jsonl").open("ab") as metrics:
        metrics.write(NOT_UTF8)

    status = sweep_main(capsys, "status", "--results-dir", str(results))
    assert status.returncode == 0, status.stderr
    assert [line.split()[0] for line in status.stdout.splitlines() if line.lstrip().startswith("#")] == [
        "#0",
        "#1",
        "#2",
    ]
    report = sweep_main(capsys, "report", "--study", "utf", "--results-dir", str(results))
    assert report.returncode == 0, report.stderr
    assert "40.00%" in report.stdout and "60.00%" in report.stdout
    assert (results / "utf.md").exists() and (results / "utf.html").exists()
