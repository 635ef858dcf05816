"""`sweep report`: the expected tables, derived by hand from hand-written metrics; CSV/JSON; bad input."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweep.cli import main
from sweep.launcher import launch
from sweep.report.table import format_value
from sweep.study import load_study
from tests.sweep.conftest import TINY_TRAIN, assert_one_line_error, sweep_main, write_study
from tests.sweep.mounts import read_only, tmpfs
from tests.sweep.report_studies import Trial, epoch, make_study

COMPLETE, PRUNED, FAIL, RUNNING = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING


@pytest.fixture
def optimizers(tmp_path: Path) -> Path:
    """Study `cmp`: 3 optimizers complete (3 epochs), one failed, one running, one pruned; 2 GPUs a trial."""
    study_file = write_study(
        tmp_path / "cmp.toml",
        study={"name": "cmp", "sampler": "grid"},
        space={"optimizer": ["sgd", "sgd_nesterov", "adam"]},
        resources={"gpus": 2},
    )
    make_study(
        tmp_path / "results",
        "cmp",
        [
            Trial(
                {"optimizer": "sgd"},
                epochs=[
                    epoch(1, 1.2, 0.55, 1.1, 0.6),
                    epoch(2, 0.9, 0.7, 0.95, 0.71),
                    epoch(3, 0.7123456, 0.7588, 1.0012344, 0.7),
                ],
            ),
            Trial(
                {"optimizer": "sgd_nesterov"},
                epochs=[
                    epoch(1, 1.1, 0.6, 1.0, 0.65),
                    epoch(2, 0.8, 0.72, 0.85, 0.74),
                    epoch(3, 0.6, 0.8125, 0.8, 0.7825),
                ],
            ),
            Trial(
                {"optimizer": "adam"},
                epochs=[
                    epoch(1, 1.3, 0.5, 1.2, 0.55),
                    epoch(2, 1.0, 0.66, 1.05, 0.69),
                    epoch(3, 0.85, 0.705, 0.99, 0.68),
                ],
            ),
            Trial({"optimizer": "sgd"}, FAIL, epochs=[epoch(1, 2.0, 0.1, 2.0, 0.1)]),
            Trial(
                {"optimizer": "sgd_nesterov"},
                RUNNING,
                epochs=[epoch(1, 2.0, 0.1, 2.0, 0.1), epoch(2, 2.0, 0.1, 2.0, 0.1)],
            ),
            Trial({"optimizer": "adam"}, PRUNED, epochs=[epoch(1, 2.0, 0.1, 2.0, 0.1)]),
        ],
    )
    return study_file


# Derived by hand: losses are epoch 3's, accuracies the best epoch's (sgd: train 75.88 at epoch 3, val
# 71.00 at epoch 2). Best: sgd_nesterov (val 78.25). Epochs: 3 + 3 + 3 + 1 + 2 + 1 = 13, at 600 s each:
# 7,800 s = 2.17 h; 2 GPUs per trial: 4.33 GPU-hours. Pruned: adam, 1 of its 2 epochs (TINY_TRAIN), 600 s x 2
# GPUs = 0.333 GPU-hours; to the end 0.667. The complete and pruned trials used 9 x 600 s x 2 GPUs + 0.333 =
# 3.333 GPU-hours of the 3.667 they would have run to the end: 90.9%.
OPTIMIZERS_MD = """\
## Study `cmp`

| Optimizer | Training loss | Train Best Acc | Val loss | Val Best Acc |
|---|---:|---:|---:|---:|
| SGD | 0.71235 | 75.88% | 1.00123 | 71.00% |
| **SGD+Nesterov** | **0.60000** | **81.25%** | **0.80000** | **78.25%** |
| Adam | 0.85000 | 70.50% | 0.99000 | 69.00% |

**Bold**: the best configuration (highest val_acc). Losses at the last finished epoch, accuracies at the best epoch.

Trials: 3 complete, 1 pruned, 1 failed, 1 running. Epochs run: 13. GPU-hours: 4.33 (2 GPUs per trial; 2.17 h of epochs).

Pruning saved 0.333 GPU-hours, 50% of them: 1 pruned trial used 0.333 GPU-hours in 1 epoch; run to their 2 epochs they would have used 0.667 (each one's remaining epochs at its own time per epoch). The study used 90.9% of the time of all its trials run to the end.
"""  # noqa: E501 (a markdown table row is one line)


def test_optimizer_table_is_exactly_the_hand_derived_markdown(
    optimizers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    assert main(["report", "--study", str(optimizers), "--results-dir", str(results)]) == 0
    assert capsys.readouterr().out == OPTIMIZERS_MD
    assert (results / "cmp.md").read_text() == OPTIMIZERS_MD
    assert (results / "cmp.html").is_file()


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    """Study `seeds`: 2 learning rates x 3 seeds, evaluated on test; one lr=0.05 seed failed."""
    study_file = write_study(
        tmp_path / "seeds.toml",
        study={"name": "seeds", "sampler": "grid", "repeats": 3},
        train={"dataset": "fake", "epochs": 2, "evaluate_test": True},
        space={"lr": [0.1, 0.05]},
        resources={"gpus": 1},
    )
    # A test accuracy logged at epoch 1 too (a program may): the last epoch's is shown, never the highest.
    first = epoch(1, 1.0, 0.5, 1.0, 0.5, test_acc=0.99, seconds=30.0)

    def last(tl: float, ta: float, vl: float, va: float, test_acc_best_val: float, test_acc: float) -> dict:
        return epoch(
            2,
            tl,
            ta,
            vl,
            va,
            test_loss=1.0,
            test_acc=test_acc,
            test_acc_best_val=test_acc_best_val,
            seconds=30.0,
        )

    make_study(
        tmp_path / "results",
        "seeds",
        [
            Trial({"lr": 0.1}, epochs=[first, last(0.3, 0.90, 0.6, 0.90, 0.89, 0.88)], repeat=0),
            Trial({"lr": 0.1}, epochs=[first, last(0.4, 0.92, 0.7, 0.92, 0.91, 0.90)], repeat=1),
            Trial({"lr": 0.1}, epochs=[first, last(0.5, 0.94, 0.8, 0.94, 0.96, 0.92)], repeat=2),
            Trial({"lr": 0.05}, epochs=[first, last(0.6, 0.80, 0.9, 0.80, 0.80, 0.79)], repeat=0),
            Trial({"lr": 0.05}, epochs=[first, last(0.8, 0.84, 1.1, 0.82, 0.83, 0.81)], repeat=1),
            Trial({"lr": 0.05}, FAIL, epochs=[first], repeat=2),
        ],
    )
    return study_file


# By hand, sample std s (n - 1) and the 95% half-width t_{0.975, n-1} · s / √n, with the textbook
# t_{0.975,2} = 4.302653 (n = 3: × 2.484138) and t_{0.975,1} = 12.706205 (n = 2: × 8.984707).
# lr 0.1: 0.3/0.4/0.5 -> 0.4, s 0.1 -> ± 0.24841; 90/92/94 -> 92, s 2 -> ± 4.97; test at the best-val
# epoch 89/91/96 -> 92, s 3.6056 -> ± 8.96; test at the last epoch 88/90/92 -> 90 ± 4.97 (not epoch 1's 99).
# lr 0.05: 0.6/0.8 -> 0.7, s 0.14142 -> ± 1.27062; 80/84 -> 82, s 2.83 -> ± 25.41; 80/82 -> 81 ± 12.71;
# test 80/83 -> 81.5, s 2.1213 -> ± 19.06; 79/81 -> 80 ± 12.71. val_acc: 92 ± 4.97 and 81 ± 12.71 overlap.
# Epochs: 5 x 2 + 1 = 11 at 30 s = 330 s = 0.09 h; 1 GPU per trial.
SEEDS_MD = """\
## Study `seeds`

| LR | n | Training loss | Train Best Acc | Val loss | Val Best Acc | Test acc (best-val epoch) | Test acc (last epoch) |
|---|---:|---:|---:|---:|---:|---:|---:|
| **0.1** | **3** | **0.40000 ± 0.24841** | **92.00 ± 4.97%** | **0.70000 ± 0.24841** | **92.00 ± 4.97%** | **92.00 ± 8.96%** | **90.00 ± 4.97%** |
| 0.05 | 2 | 0.70000 ± 1.27062 | 82.00 ± 25.41% | 1.00000 ± 1.27062 | 81.00 ± 12.71% | 81.50 ± 19.06% | 80.00 ± 12.71% |

**Bold**: the best configuration (highest mean val_acc). Rows ranked by the mean. Mean ± half-width of the 95% confidence interval over the n trials (seeds) of a configuration (Student's t, n − 1 degrees of freedom; no interval for n = 1). Not distinguishable from the best (their val_acc intervals overlap): LR 0.05. Losses at the last finished epoch, train and val accuracies at their best epoch. Test accuracy: the test set evaluated once, after the last epoch, with the weights of the best validation epoch and with the last epoch's; no epoch is chosen on it.

Trials: 5 complete, 0 pruned, 1 failed, 0 running. Epochs run: 11. GPU-hours: 0.09 (1 GPU per trial; 0.09 h of epochs).
"""  # noqa: E501 (a markdown table row is one line)


def test_repeats_give_mean_interval_and_n_and_test_columns(
    seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--study", str(seeds), "--results-dir", str(tmp_path / "results")]) == 0
    assert capsys.readouterr().out == SEEDS_MD


T_975_DF2 = 4.302653  # Student's t, 0.975 quantile, 2 degrees of freedom (any statistics textbook)
RANKED = {  # lr -> (train_loss, val_acc) of seeds 0, 1, 2; launched in this order
    0.2: [(1.50, 0.50), (1.40, 0.52), (1.45, 0.54)],
    0.1: [(0.40, 0.90), (0.45, 0.91), (0.35, 0.95)],
    0.05: [(0.60, 0.86), (0.50, 0.88), (0.55, 0.93)],
}


def _by_hand(values: list[float]) -> tuple[float, float]:
    """Mean and 95% half-width of three seeds' values, from the textbook t."""
    assert len(values) == 3
    return statistics.mean(values), T_975_DF2 * statistics.stdev(values) / math.sqrt(3)


def test_repeats_rank_by_mean_with_t_intervals_computed_by_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    trials = [
        Trial({"lr": lr}, epochs=[epoch(1, tl, 0.5, 1.0, va)], repeat=seed)
        for lr, seeds in RANKED.items()
        for seed, (tl, va) in enumerate(seeds)
    ]
    make_study(results, "ranked", trials)
    assert main(["report", "--study", "ranked", "--results-dir", str(results), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)[0]["rows"]
    expected = {
        lr: [_by_hand([tl for tl, _ in seeds]), _by_hand([va for _, va in seeds])]
        for lr, seeds in RANKED.items()
    }
    # Ranked by the mean val_acc: 0.92 (lr 0.1), 0.89 (lr 0.05), 0.52 (lr 0.2), not in launch order.
    assert [row["lr"] for row in rows] == [0.1, 0.05, 0.2]
    for row in rows:
        (tl_mean, tl_half), (va_mean, va_half) = expected[row["lr"]]
        assert row["n"] == 3
        assert row["train_loss"] == pytest.approx(tl_mean) and row["train_loss_ci"] == pytest.approx(tl_half)
        assert row["val_acc"] == pytest.approx(va_mean) and row["val_acc_ci"] == pytest.approx(va_half)
        assert row["value_ci"] == pytest.approx(va_half)
    assert [row["overlaps_best"] for row in rows] == [False, True, False]

    assert main(["report", "--study", "ranked", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")][1:]
    for line, lr in zip(table, [0.1, 0.05, 0.2], strict=True):
        (tl_mean, tl_half), (va_mean, va_half) = expected[lr]
        cells = [cell.strip("* ") for cell in line.strip("|").split("|")]
        assert cells[:3] == [format_value(lr), "3", f"{tl_mean:.5f} ± {tl_half:.5f}"]
        assert cells[5] == f"{va_mean * 100:.2f} ± {va_half * 100:.2f}%"
    # The best interval (0.92 ± 0.066) meets lr 0.05's (0.89 ± 0.090), not lr 0.2's (0.52 ± 0.050).
    assert "Not distinguishable from the best (their val_acc intervals overlap): LR 0.05." in out
    assert "Student's t, n − 1 degrees of freedom" in out


@pytest.fixture
def storage_only(tmp_path: Path) -> Path:
    """Study `adhoc`, with no study file: 3 params of which 2 differ; intermediate values only."""
    results = tmp_path / "results"
    make_study(
        results,
        "adhoc",
        [
            Trial(
                {"batch_size": 128, "weight_decay": 1e-4, "num_workers": 4}, intermediate={1: 0.5, 2: 0.61}
            ),
            Trial(
                {"batch_size": 256, "weight_decay": 5e-4, "num_workers": 4},
                intermediate={1: 0.55, 2: 0.6, 3: 0.58},
            ),
            Trial({"batch_size": 128, "weight_decay": 5e-4, "num_workers": 4}, PRUNED, intermediate={1: 0.3}),
        ],
    )
    return results


ADHOC_MD = """\
## Study `adhoc`

| Batch size | Weight decay | Val Best Acc |
|---|---|---:|
| **128** | **1e-4** | **61.00%** |
| 256 | 5e-4 | 60.00% |

**Bold**: the best configuration (highest val_acc). Losses at the last finished epoch, accuracies at the best epoch.

Trials: 2 complete, 1 pruned, 0 failed, 0 running. Epochs run: 6. GPU-hours: 0.00 (assuming 1 GPU per trial: neither the study file nor the storage says; 0.00 h of epochs).

Pruning: 1 pruned trial used 0.000 GPU-hours (1 epoch); what they would have used to the end is unknown: the study file does not say their epochs.
"""  # noqa: E501


def test_study_only_in_storage_falls_back_to_trial_params_and_values(
    storage_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--study", "adhoc", "--results-dir", str(storage_only)]) == 0
    assert capsys.readouterr().out == ADHOC_MD


def test_study_without_complete_trials_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    make_study(results, "young", [Trial({"lr": 0.1}, RUNNING, epochs=[epoch(1, 2.0, 0.1, 2.0, 0.1)])])
    assert main(["report", "--study", "young", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "No complete trials yet in study `young`" in out
    assert "Trials: 0 complete, 0 pruned, 0 failed, 1 running. Epochs run: 1." in out
    assert (results / "young.html").is_file()


def test_all_reports_every_stored_study(
    optimizers: Path, storage_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--all", "--results-dir", str(storage_only)]) == 0
    out = capsys.readouterr().out
    assert "## Study `adhoc`" in out and "## Study `cmp`" in out
    assert {p.name for p in storage_only.glob("*.md")} == {"adhoc.md", "cmp.md"}


def test_csv_and_json_carry_the_same_rows(
    seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    assert main(["report", "--study", str(seeds), "--results-dir", str(results), "--format", "json"]) == 0
    (study,) = json.loads(capsys.readouterr().out)
    assert study["study"] == "seeds" and study["totals"]["complete"] == 5
    first, second = study["rows"]
    assert (first["lr"], first["n"], first["best"]) == (0.1, 3, True)
    assert first["val_acc"] == pytest.approx(0.92) and first["val_acc_std"] == pytest.approx(0.02)
    assert (second["lr"], second["n"], second["best"]) == (0.05, 2, False)
    assert main(["report", "--study", str(seeds), "--results-dir", str(results), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("study,lr,n,train_loss,train_acc,val_loss,val_acc,test_acc_best_val,test_acc,")
    assert len(lines) == 3 and (results / "seeds.csv").read_text().splitlines() == lines


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("sgd_nesterov", "SGD+Nesterov"),
        ("adam", "Adam"),
        (1e-4, "1e-4"),
        (5e-4, "5e-4"),
        (0.1, "0.1"),
        (128, "128"),
        (True, "yes"),
        ("cosine", "cosine"),
        (None, "—"),
    ],
)
def test_param_values_are_written_like_the_original(value: object, text: str) -> None:
    assert format_value(value) == text


def test_unknown_study_is_one_line_and_writes_nothing(
    optimizers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    before = sorted(results.rglob("*"))
    assert_one_line_error(
        sweep_main(capsys, "report", "--study", "nosuch", "--results-dir", str(results)), "'nosuch'", "cmp"
    )
    assert sorted(results.rglob("*")) == before


def test_missing_storage_is_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = sweep_main(capsys, "report", "--study", "cmp", "--results-dir", str(tmp_path / "r"))
    assert_one_line_error(result, "no database", "sweep launch")
    assert not (tmp_path / "r").exists()


def test_a_study_reported_by_name_without_its_file_takes_gpus_and_test_columns_from_the_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_file = write_study(
        tmp_path / "elsewhere.toml",  # not in studies/: `--study elsewhere` cannot find it
        study={"name": "elsewhere", "sampler": "grid"},
        space={"lr": [0.05]},
        train={**TINY_TRAIN, "epochs": 1, "evaluate_test": True},
        resources={"gpus": 2, "cpus": 1},
    )
    results = tmp_path / "results"
    launch(load_study(study_file), results_dir=results, executor="debug", out=lambda line: None)
    study_file.unlink()
    assert main(["report", "--study", "elsewhere", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "(2 GPUs per trial;" in out and "assuming" not in out
    assert "Test" in out.splitlines()[2]  # the header row has the test columns


def test_report_out_writes_elsewhere_from_a_read_only_results_folder(
    optimizers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results, out = tmp_path / "results", tmp_path / "elsewhere" / "report"
    kept = shutil.move(results, tmp_path / "kept")
    with tmpfs(results, size="64m"):  # a colleague's results: a read-only file system, root included
        shutil.copytree(kept, results, dirs_exist_ok=True)
        read_only(results)
        code = main(["report", "--study", str(optimizers), "--results-dir", str(results), "--out", str(out)])
        assert code == 0
        assert capsys.readouterr().out == OPTIMIZERS_MD
        assert {p.name for p in out.iterdir()} == {"cmp.md", "cmp.html"}
        assert (out / "cmp.md").read_text() == OPTIMIZERS_MD
        assert not (results / "cmp.md").exists()
        # without --out the same report cannot be written there, and the line says which file
        result = sweep_main(capsys, "report", "--study", str(optimizers), "--results-dir", str(results))
        assert_one_line_error(result, "cmp.md", "cannot write", "--out DIR")


def test_a_program_that_logs_two_of_the_trainers_metrics_gets_those_two_columns_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # logs train_loss and val_acc only: not the trainer's four columns, two of them all "—"
    results = tmp_path / "results"
    lines = [{"epoch": 1, "train_loss": 0.9, "val_acc": 0.5}, {"epoch": 2, "train_loss": 0.5, "val_acc": 0.7}]
    other = [{"epoch": 1, "train_loss": 1.1, "val_acc": 0.4}, {"epoch": 2, "train_loss": 0.8, "val_acc": 0.6}]
    make_study(results, "two", [Trial({"lr": 0.1}, epochs=lines), Trial({"lr": 0.2}, epochs=other)])
    assert main(["report", "--study", "two", "--results-dir", str(results), "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert [column for column in header if column in ("train_loss", "train_acc", "val_loss", "val_acc")] == [
        "val_acc", "train_loss"
    ]  # fmt: skip
    assert main(["report", "--study", "two", "--results-dir", str(results)]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert table[0].count("|") == 4 and "—" not in "".join(table)  # LR, val acc, train loss


def test_a_metric_no_complete_trial_logged_gets_no_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the trainer's four, and a test accuracy only a pruned trial logged: no all-empty column for it
    results = tmp_path / "results"
    trials = [
        Trial({"lr": 0.1}, epochs=[epoch(1, 1.0, 0.5, 1.0, 0.5)]),
        Trial({"lr": 0.2}, PRUNED, epochs=[epoch(1, 1.0, 0.4, 1.0, 0.4, test_acc=0.3)]),
    ]
    make_study(results, "gap", trials)
    assert main(["report", "--study", "gap", "--results-dir", str(results)]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert "test" not in table[0].lower() and "—" not in "".join(table)
