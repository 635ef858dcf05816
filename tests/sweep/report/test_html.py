"""The report page: self-contained, loads in headless chromium without errors, one curve per trial."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from optuna.trial import TrialState

from sweep.cli import main
from tests.sweep.browser import chromium, save_screenshot, watched_page
from tests.sweep.report_studies import Trial, epoch, make_study

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def _grid_study(results: Path) -> None:
    """2 optimizers x 2 learning rates complete (3 epochs), and one pruned trial: 5 curves."""
    trials = [
        Trial(
            {"optimizer": optimizer, "lr": lr},
            epochs=[epoch(e, 2.0 / e, 0.3 + 0.1 * e + lr, 2.1 / e, 0.25 + 0.1 * e + lr) for e in (1, 2, 3)],
        )
        for optimizer in ("sgd", "adam")
        for lr in (0.1, 0.05)
    ]
    trials.append(
        Trial({"optimizer": "sgd", "lr": 0.05}, TrialState.PRUNED, epochs=[epoch(1, 2.5, 0.2, 2.5, 0.2)])
    )
    make_study(results, "grid", trials)


@pytest.fixture
def page_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    results = tmp_path / "results"
    _grid_study(results)
    assert main(["report", "--study", "grid", "--results-dir", str(results)]) == 0
    capsys.readouterr()
    return results / "grid.html"


def test_page_is_self_contained(page_file: Path) -> None:
    text = page_file.read_text()
    assert "<script src=" not in text and 'src="http' not in text  # nothing fetched: works offline
    assert len(text) > 3_000_000  # plotly.js itself is inlined
    assert text.count("Plotly.newPlot") == 4  # curves, history, importance, parallel coordinates
    assert 'id="importance"' in text


def test_page_loads_in_chromium_with_one_trace_per_trial(
    browser: Browser, page_file: Path, tmp_path: Path
) -> None:
    page, errors = watched_page(browser)
    page.goto(page_file.as_uri())
    page.wait_for_function("document.querySelectorAll('#curves .scatterlayer .trace').length === 5")
    assert page.evaluate("document.getElementById('curves').data.length") == 5
    names = page.evaluate("document.getElementById('curves').data.map(t => t.name)")
    assert names[0] == "#0 optimizer=SGD lr=0.1" and names[4].startswith("#4 ")
    for div in ("history", "importance", "parallel"):
        page.wait_for_function(f"document.querySelector('#{div} .main-svg') !== null")
    # few epochs and trials: one tick per whole number, none at 0.5
    for div, ticks in (("curves", ["1", "2", "3"]), ("history", ["0", "1", "2", "3"])):
        shown = page.evaluate(f"[...document.querySelectorAll('#{div} .xtick text')].map(t => t.textContent)")
        assert shown == ticks, (div, shown)
    save_screenshot(page, "report-page.png", tmp_path)
    page.close()
    assert errors == []


def test_page_shows_the_table_and_a_caveat_on_importance_from_few_trials(page_file: Path) -> None:
    text = page_file.read_text()
    head = text[: text.index("<h2>")]  # the table comes before the first figure
    assert "<th>Optimizer</th><th>LR</th><th>Training loss</th>" in head
    # the best by val_acc: lr 0.1 (0.25 + 0.3 + 0.1 = 65.00% at epoch 3); of the tied two, the first run
    assert "<td><b>SGD</b></td><td><b>0.1</b></td>" in head and "<b>65.00%</b>" in head
    assert head.count("<tr>") == 5  # the header and 4 configurations (the pruned trial is not in it)
    assert "From 4 complete trials only" in text
