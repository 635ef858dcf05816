"""`sweep report` writes its files all or none: a full disk names the file and leaves the old ones whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.errors import SweepError
from sweep.report.files import write_all
from tests.sweep.conftest import assert_one_line_error, sweep_main
from tests.sweep.mounts import read_only, tmpfs
from tests.sweep.report_studies import Trial, epoch, make_study


def _study(results: Path) -> None:
    make_study(results, "tb", [Trial({"lr": 0.05}, epochs=[epoch(1, 1.0, 0.5, 1.1, 0.4)])])


def test_report_on_a_full_disk_names_the_file_and_keeps_the_old_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: `sweep report` on a full disk said only 'No space left on device' and left NAME.md new
    beside an old (or missing) NAME.html."""
    with tmpfs(tmp_path / "small", "1m") as small:  # the page (plotly inside, ~5 MB) cannot fit
        _study(small)
        (small / "tb.md").write_text("old table\n")
        (small / "tb.html").write_text("old page\n")
        result = sweep_main(capsys, "report", "--study", "tb", "--results-dir", str(small))
        assert_one_line_error(result, str(small / "tb.html"), "No space left on device")
        assert (small / "tb.md").read_text() == "old table\n"
        assert (small / "tb.html").read_text() == "old page\n"
        assert sorted(path.name for path in small.iterdir()) == ["runs", "sweep.db", "tb.html", "tb.md"]


def test_report_on_a_full_disk_leaves_no_new_file_where_there_was_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: a report that could not write its page left a new NAME.md alone."""
    with tmpfs(tmp_path / "small", "1m") as small:
        _study(small)
        result = sweep_main(capsys, "report", "--study", "tb", "--results-dir", str(small))
        assert_one_line_error(result, "tb.html", "No space left on device")
        assert sorted(path.name for path in small.iterdir()) == ["runs", "sweep.db"]


def test_write_all_replaces_every_file_or_none(tmp_path: Path) -> None:
    first, second = tmp_path / "a.md", tmp_path / "b.html"
    first.write_text("old a")
    first.chmod(0o640)
    write_all([(first, "new a"), (second, "new b")])
    assert (first.read_text(), second.read_text()) == ("new a", "new b")
    assert first.stat().st_mode & 0o777 == 0o640  # a user's permission bits are kept
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.md", "b.html"]


def test_write_all_into_a_read_only_folder_names_the_first_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m") as folder:
        (folder / "a.md").write_text("old a")
        read_only(folder)
        with pytest.raises(SweepError, match=r"a\.md: cannot write it \(Read-only file system\)"):
            write_all([(folder / "a.md", "new a"), (folder / "b.html", "new b")])
        assert (folder / "a.md").read_text() == "old a" and not (folder / "b.html").exists()
