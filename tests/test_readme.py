"""What the README and the guide promise a new user, checked against the code: the own-program example
runs on a machine without a GPU, every command's exit statuses are in one table, the test commands name
the fast subset, and the figures the docs quote keep the form the commands print."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from sweep.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
COMMANDS = (ROOT / "docs" / "reference" / "commands.md").read_text()
OWN_PROGRAM = (ROOT / "docs" / "guide" / "own-program.md").read_text()
REPORTS = (ROOT / "docs" / "guide" / "reports-and-dashboard.md").read_text()
DEVELOPMENT = (ROOT / "docs" / "development.md").read_text()


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_readme_stays_short_and_keeps_the_quick_start_and_everyday_commands() -> None:
    assert len(README.splitlines()) <= 150
    quick = _section(README, "Quick start")
    assert "bash scripts/try.sh" in quick and "bash scripts/test.sh" in quick
    for command in ("sweep launch --study optimizers", "sweep status", "sweep report --study optimizers",
                    "sweep dashboard"):  # fmt: skip
        assert command in README, command


def test_the_own_program_example_asks_for_no_gpu_so_it_runs_on_a_cpu_machine() -> None:
    block = OWN_PROGRAM.split("```toml\n", 1)[1].split("```", 1)[0]
    example = tomllib.loads(block)
    assert example["resources"]["gpus"] == 0  # the default, 1, is refused where no GPU is
    assert "program" in example


def test_every_command_has_a_row_in_the_exit_status_table() -> None:
    table = _section(COMMANDS, "Exit status")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = {re.match(r"\| `([^`]+)`", row).group(1).split()[1] for row in rows if row.startswith("| `sweep")}  # type: ignore[union-attr]
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # noqa: SLF001
    assert set(commands) <= named, set(commands) - named
    assert any(row.startswith("| `python -m trainer`") for row in rows)
    header = next(line for line in table.splitlines() if line.startswith("| Command"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == ["Command", "0", "1", "2", "143"]
    assert "130" in table and "141" in table


def test_every_command_has_a_section_in_the_command_reference() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # noqa: SLF001
    for command in commands:
        assert f"\n## sweep {command}\n" in COMMANDS, command
    assert "\n## python -m trainer\n" in COMMANDS


def test_the_test_sections_give_no_stale_time_and_name_the_fast_subset() -> None:
    for section in (_section(README, "Test"), _section(DEVELOPMENT, "Set up and test")):
        assert "in a few minutes" not in section
        assert 'python -m pytest -q -m "not slow"' in section
    assert "python -m pytest -q\n" in _section(README, "Test")


def test_the_smoke_studys_totals_line_has_the_form_the_report_prints_for_local_runs() -> None:
    block = REPORTS.split("$ sweep report --study smoke --readme NOTES.md", 1)[1].split("```", 1)[0]
    (line,) = [line for line in block.splitlines() if line.startswith("Trials: ")]
    # table.totals_line for trials whose manifests give their hours (a local run writes them)
    form = (
        r"Trials: 4 complete, 0 pruned, 0 failed, 0 running\. Epochs run: 8\. GPU-hours: \d+\.\d{3} used, "
        r"\d+\.\d{3} of them wasted \(pruned, failed, lost to requeues\), every attempt's time from sacct or "
        r"the run's manifest\.json \(0 GPUs per trial; \d+\.\d\d h of epochs\)\."
    )
    assert re.fullmatch(form, line), line
