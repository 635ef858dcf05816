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


def test_an_epoch_logged_again_is_replaced_by_its_later_line(tmp_path: Path) -> None:
    """A program resumed from an older checkpoint logs epochs 2 and 3 again: the later lines win, each
    epoch once, in epoch order."""
    path = tmp_path / "metrics.jsonl"
    lines = [
        epoch(1, 2.0, 0.1, 2.0, 0.1),
        epoch(2, 1.5, 0.2, 1.5, 0.2, stale=1.0),
        epoch(3, 1.0, 0.3, 1.0, 0.3),
    ]
    lines += [epoch(2, 1.4, 0.25, 1.4, 0.22), epoch(3, 0.9, 0.35, 0.9, 0.33, extra_metric=7.0)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    history = read_epochs(path)
    assert [(e["epoch"], e["val_acc"], e["val_loss"]) for e in history] == [
        (1.0, 0.1, 2.0),
        (2.0, 0.22, 1.4),
        (3.0, 0.33, 0.9),
    ]
    assert history[2]["extra_metric"] == 7.0
    assert "stale" not in history[1]  # a replaced epoch keeps nothing of its earlier line
