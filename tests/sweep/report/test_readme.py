"""The README block: replaced between its markers, added at the end when missing, idempotent, byte-exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.cli import main
from sweep.errors import SweepError
from sweep.report.readme import replace_block
from tests.sweep.report_studies import Trial, epoch, make_study

BEFORE = "# Project\r\n\r\nIntro with trailing spaces   \n\ttabs, ünïcödé, no final newline"
BLOCK = "| a | b |\n|---|---|\n| 1 | 2 |\n"


def test_missing_block_is_appended_and_the_rest_kept_byte_for_byte() -> None:
    text = "# Title\n\nSome text.\n"
    out = replace_block(text, "opt", BLOCK)
    assert out == text + "\n<!-- sweep:opt -->\n" + BLOCK + "<!-- /sweep:opt -->\n"
    assert replace_block(out, "opt", BLOCK) == out


def test_existing_block_is_replaced_and_only_it() -> None:
    head = "# Title\n\n## Results\n\n"
    tail = "\n## More\n\n<!-- sweep:other -->\nkeep\n<!-- /sweep:other -->\nend   \n"
    text = f"{head}<!-- sweep:opt -->\nold table\n<!-- /sweep:opt -->{tail}"
    out = replace_block(text, "opt", BLOCK)
    assert out == f"{head}<!-- sweep:opt -->\n{BLOCK}<!-- /sweep:opt -->{tail}"
    assert replace_block(out, "opt", BLOCK) == out


def test_crlf_file_gets_a_crlf_block() -> None:
    out = replace_block("a\r\nb\r\n", "opt", BLOCK)
    assert (
        out
        == "a\r\nb\r\n\r\n<!-- sweep:opt -->\r\n" + BLOCK.replace("\n", "\r\n") + "<!-- /sweep:opt -->\r\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        "<!-- sweep:opt -->\nno end\n",
        "no start\n<!-- /sweep:opt -->\n",
        "<!-- /sweep:opt -->\n<!-- sweep:opt -->\n",
        "<!-- sweep:opt -->\n<!-- /sweep:opt -->\n<!-- sweep:opt -->\n<!-- /sweep:opt -->\n",
    ],
)
def test_broken_markers_are_an_error_naming_the_file(text: str) -> None:
    with pytest.raises(SweepError, match="README.md: .*fix the markers by hand"):
        replace_block(text, "opt", BLOCK, source="README.md")


def test_sweep_report_readme_is_idempotent_and_leaves_the_rest_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    make_study(results, "opt", [Trial({"optimizer": "sgd"}, epochs=[epoch(1, 0.5, 0.8, 0.6, 0.75)])])
    readme = tmp_path / "README.md"
    readme.write_bytes(BEFORE.encode())
    args = ["report", "--study", "opt", "--results-dir", str(results), "--readme", str(readme)]
    assert main(args) == 0
    first = readme.read_bytes()
    assert first.startswith(BEFORE.encode())  # the old text, untouched; the block follows
    block = (results / "opt.md").read_text().split("\n\n", 1)[1]  # the md file less its heading
    assert first[len(BEFORE.encode()) :].decode() == (
        "\r\n\r\n<!-- sweep:opt -->\r\n" + block.replace("\n", "\r\n") + "<!-- /sweep:opt -->\r\n"
    )
    assert main(args) == 0
    assert readme.read_bytes() == first
    capsys.readouterr()


def test_bad_markers_leave_readme_and_results_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    make_study(results, "opt", [Trial({"optimizer": "sgd"}, epochs=[epoch(1, 0.5, 0.8, 0.6, 0.75)])])
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- sweep:opt -->\n")
    assert main(["report", "--study", "opt", "--results-dir", str(results), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(readme) in err
    assert readme.read_text() == "x\n<!-- sweep:opt -->\n"
    assert not (results / "opt.md").exists() and not (results / "opt.html").exists()
