"""trainer.read_metrics: whole lines only, and a file it cannot read is a UserError naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.errors import UserError
from trainer.metrics import EpochMetrics, read_metrics


def test_a_metrics_line_that_is_not_utf8_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    """Fault: non-UTF-8 bytes in metrics.jsonl raised a bare UnicodeDecodeError from the trainer's reader."""
    path = tmp_path / "metrics.jsonl"
    line = EpochMetrics(1, 1.0, 0.5, 1.0, 0.5, 0.1, 2.0, 100.0).to_json()
    path.write_bytes(line.encode() + b"\n" + b"\xff\xfe\x98garbage\n")
    with pytest.raises(UserError, match="not a metrics file") as caught:
        read_metrics(path)
    assert str(caught.value).startswith(f"{path}: ")
    path.write_bytes(line.encode() + b"\r\n" + b'{"epoch": 2, \xe9')  # a last line still being written
    assert [record.epoch for record in read_metrics(path)] == [1]
