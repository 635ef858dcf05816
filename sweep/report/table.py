"""Report text: the comparison table as markdown (the README's form), CSV or JSON, from `ReportData`."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd

from sweep.gpu_hours import StudyHours
from sweep.report.confirm import Winner
from sweep.report.data import ACCURACIES, METRICS, PARAM, ReportData, Totals
from sweep.study.spec import maximizes

# Column headers of the original README; params not listed get "Snake case" -> "Snake case".
PARAM_NAMES = {"num_workers": "Workers", "lr": "LR", "amp": "AMP"}
METRIC_NAMES = {
    "train_loss": "Training loss",
    "train_acc": "Train Best Acc",
    "val_loss": "Val loss",
    "val_acc": "Val Best Acc",
    "test_acc_best_val": "Test acc (best-val epoch)",
    "test_acc": "Test acc (last epoch)",
}
VALUE_NAMES = {
    "sgd": "SGD",
    "sgd_nesterov": "SGD+Nesterov",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "adam": "Adam",
    "adamw": "AdamW",
}
MISSING = "—"
DIVERGED = "diverged"  # a cell of a configuration whose trials' metric became NaN or infinite


def param_name(key: str) -> str:
    """The column header of a param: optimizer -> Optimizer, num_workers -> Workers."""
    return PARAM_NAMES.get(key) or key.replace("_", " ").capitalize()


def format_value(value: Any) -> str:
    """A param value as the README writes it: sgd_nesterov -> SGD+Nesterov, 0.0001 -> 1e-4."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return VALUE_NAMES.get(value, value)
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:  # weight decays: 5e-4, not 0.0005
            mantissa, exponent = f"{value:.2e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:.4g}"
    return str(value)


def format_metric(metric: str, mean: float, spread: float, *, with_spread: bool) -> str:
    """A loss with 5 decimals, an accuracy in % with 2; `mean ± spread` (the interval's half-width) when
    `with_spread` and the spread is known."""
    if math.isnan(mean):
        return MISSING
    if metric not in METRICS:  # a program's own metric: its scale is its own
        if with_spread and not math.isnan(spread):
            return f"{mean:.5g} ± {spread:.2g}"
        return f"{mean:.5g}"
    scale, digits, unit = (100.0, 2, "%") if metric in ACCURACIES else (1.0, 5, "")
    if with_spread and not math.isnan(spread):
        return f"{mean * scale:.{digits}f} ± {spread * scale:.{digits}f}{unit}"
    return f"{mean * scale:.{digits}f}{unit}"


def table_metrics(data: ReportData) -> tuple[str, ...]:
    """The metric columns: train and val always, test when the study evaluates on test (the built-in
    trainer's); a program's own metrics otherwise (`sweep.report.data.table_metrics`)."""
    return data.metrics


def markdown_block(data: ReportData) -> str:
    """The table, its notes and the totals line: what goes into the README block."""
    lines: list[str] = []
    if len(data.rows):
        lines += _table_lines(data)
        lines += ["", best_note(data)]
        if data.confirmation is not None:
            lines += ["", confirmation_line(data)]
        if data.environment:
            lines += ["", environment_line(data)]
    else:
        lines.append(
            f"No complete trials yet in study `{data.info.name}`; the table fills in as trials finish."
        )
    if data.gone:
        lines += ["", gone_line(data)]
    lines += ["", totals_line(data.totals)]
    if data.savings is not None:
        lines += ["", data.savings.line()]
    return "\n".join(lines) + "\n"


def gone_line(data: ReportData) -> str:
    """The configurations with complete trials that the study file no longer has."""
    names = [", ".join(f"{param_name(k)} {format_value(v)}" for k, v in gone.values) for gone in data.gone]
    count = len(data.gone)
    what = f"{count} configuration{'s' if count != 1 else ''} no longer in the study file"
    shown = "shown above" if data.gone_shown else "`--all` shows them"
    return f"{what}: {'; '.join(names)} ({shown})."


def markdown_document(data: ReportData) -> str:
    """The whole `NAME.md`: a heading and the block."""
    header = f"## Study `{data.info.name}`\n\n"
    if data.base is not None:
        header += f"{data.base}\n\n"
    return header + markdown_block(data)


def table_cells(data: ReportData) -> tuple[list[str], list[tuple[list[str], bool]]]:
    """The table as text cells: its headers, then each row's cells and whether it is the best row.
    The markdown table and the report page's HTML table are both drawn from these."""
    metrics = table_metrics(data)
    headers = [param_name(key) for key in data.shown] or ["Study"]
    if data.repeats:
        headers.append("n")
    headers += [METRIC_NAMES.get(metric, metric) for metric in metrics]
    rows = data.rows
    columns = [_formatted_values(rows[PARAM + key]) for key in data.shown] or [[data.info.name] * len(rows)]
    if data.repeats:
        columns.append([str(n) for n in rows["n"].tolist()])
    diverged, counts = rows["diverged"].tolist(), rows["n"].tolist()
    for m in metrics:
        means, cis = rows[m].tolist(), rows[f"{m}_ci"].tolist()
        cells = [format_metric(m, a, b, with_spread=data.repeats) for a, b in zip(means, cis, strict=True)]
        columns.append(
            [
                _diverged_cell(cell, k, n, m == data.info.metric)
                for cell, k, n in zip(cells, diverged, counts, strict=True)
            ]
        )
    return headers, [
        (list(cells), best)
        for cells, best in zip(zip(*columns, strict=True), rows["best"].tolist(), strict=True)
    ]


def _diverged_cell(cell: str, diverged: int, n: int, is_metric: bool) -> str:
    """A row whose trials all diverged says so in every metric cell; one where some did, in the study
    metric's cell (its numbers are the other trials')."""
    if diverged and diverged == n:
        return DIVERGED
    if diverged and is_metric:
        return f"{cell} ({diverged} of {n} diverged)"
    return cell


def _table_lines(data: ReportData) -> list[str]:
    headers, rows = table_cells(data)
    shown = len(data.shown) or 1  # the parameter columns are left-aligned, the rest right-aligned
    align = ["---"] * shown + ["---:"] * (len(headers) - shown)
    lines = [_row_line(headers), "|" + "|".join(align) + "|"]
    for cells, best in rows:
        if best:
            cells = [cell if cell == MISSING else f"**{cell}**" for cell in cells]
        lines.append(_row_line(cells))
    return lines


def _formatted_values(column: pd.Series) -> list[str]:
    """`format_value` of each cell, each distinct value formatted once (a grid has a handful)."""
    texts = {value: format_value(value) for value in column.dropna().unique()}
    return column.map(texts).fillna(MISSING).tolist()


def _row_line(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def best_note(data: ReportData) -> str:
    """The line under the table: what bold means, what ± means and which rows the best is not told
    apart from, and at which epoch each column is taken."""
    which = "highest" if maximizes(data.info.direction) else "lowest"
    mean = "mean " if data.repeats else ""
    note = f"**Bold**: the best configuration ({which} {mean}{data.info.metric})."
    if data.repeats:
        note += (
            " Rows ranked by the mean. Mean ± half-width of the 95% confidence interval over the n trials"
            " (seeds) of a configuration (Student's t, n − 1 degrees of freedom; no interval for n = 1). "
            + overlap_note(data)
        )
    if int(data.rows["diverged"].sum()):
        note += (
            f" {DIVERGED.capitalize()}: {data.info.metric} became NaN or infinite; the trial was stopped"
            " there (its epochs stay in its run dir)."
        )
    if any(metric not in METRICS for metric in data.metrics):
        return (
            note
            + f" Losses at the last finished epoch, other metrics at the best epoch of {data.info.metric}."
        )
    if "test_acc" not in data.metrics:
        return note + " Losses at the last finished epoch, accuracies at the best epoch."
    return note + (
        " Losses at the last finished epoch, train and val accuracies at their best epoch. Test accuracy:"
        " the test set evaluated once, after the last epoch, with the weights of the best validation epoch"
        " and with the last epoch's; no epoch is chosen on it."
    )


def overlap_note(data: ReportData) -> str:
    """Which rows the best one cannot be told apart from: their intervals of the study's metric overlap."""
    rows = data.rows[data.rows["overlaps_best"]]
    if not len(rows):
        return f"The best configuration's interval of {data.info.metric} overlaps no other's."
    names = [
        ", ".join(f"{param_name(key)} {format_value(row[PARAM + key])}" for key in data.shown)
        or data.info.name
        for _, row in rows.iterrows()
    ]
    return (
        f"Not distinguishable from the best (their {data.info.metric} intervals overlap): {'; '.join(names)}."
    )


def confirmation_line(data: ReportData) -> str:
    """The search's winner and the confirmed winner, and whether they differ."""
    found = data.confirmation
    assert found is not None  # only called when there is one
    metric = data.info.metric

    def named(winner: Winner) -> str:
        params = ", ".join(f"{param_name(key)} {format_value(value)}" for key, value in winner.params.items())
        value = format_metric(metric, winner.value, math.nan, with_spread=False)
        return f"{params} ({'mean ' if winner.n > 1 else ''}{metric} {value} over {_seeds(winner.n)})"

    line = (
        f"**Confirmation**: the search's winner was {named(found.search)}; the best {found.configs} were run"
        f" with {found.seeds} further seed{'s' if found.seeds != 1 else ''} each, and the confirmed winner"
        f" is {named(found.confirmed)}."
    )
    if found.differ:
        return line + " They differ: the search's winner did not hold up over more seeds."
    return line + " The search's winner holds."


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


TRIALS_NAMED = 6  # trial numbers listed per value on the Environment line; the rest are counted


def environment_line(data: ReportData) -> str:
    """The Environment line: the aspects (GPU models, code, package sets) in which the complete trials'
    manifests differ, each value with its trials."""
    parts = []
    for spread in data.environment:
        groups = "; ".join(f"{value}: {_trial_numbers(numbers)}" for value, numbers in spread.groups)
        parts.append(f"{spread.aspect} ({groups})")
    return (
        f"**Environment**: the trials ran with different {', '.join(parts)}; compare their rows with care"
        " (each run dir's manifest.json has the details)."
    )


def _trial_numbers(numbers: tuple[int, ...]) -> str:
    shown = ", ".join(str(n) for n in numbers[:TRIALS_NAMED])
    more = f" and {len(numbers) - TRIALS_NAMED} more" if len(numbers) > TRIALS_NAMED else ""
    return f"trial{'s' if len(numbers) != 1 else ''} {shown}{more}"


def totals_line(totals: Totals) -> str:
    """Trials complete / pruned / failed / running, epochs run and GPU-hours."""
    counts = f"{totals.complete} complete, {totals.pruned} pruned, {totals.failed} failed"
    counts += f", {totals.running} running"
    if totals.waiting:
        counts += f", {totals.waiting} waiting"
    gpus = f"{totals.gpus} GPU{'s' if totals.gpus != 1 else ''} per trial"
    if not totals.gpus_known:
        gpus = "assuming 1 GPU per trial: neither the study file nor the storage says"
    hours = totals.hours
    if hours is not None and any(item.attempts for item in hours.trials):  # the jobs' own times
        # with sacct down, the hours line already says where they come from (the manifests): no more
        source = "" if hours.error else ", every attempt's time from sacct or the run's manifest.json"
        return (
            f"Trials: {counts}. Epochs run: {totals.epochs}. {hours.line()}{source}"
            f" ({gpus}; {totals.epoch_seconds / 3600:.2f} h of epochs)."
        )
    return (
        f"Trials: {counts}. Epochs run: {totals.epochs}. "
        f"GPU-hours: {totals.gpu_hours:.2f} ({gpus}; {totals.epoch_seconds / 3600:.2f} h of epochs)."
    )


def machine_frame(data: ReportData) -> pd.DataFrame:
    """The rows with plain column names for CSV/JSON: study, params, n, metrics, <metric>_std, <metric>_ci
    (the 95% interval's half-width), value, value_std, value_ci, best, overlaps_best."""
    metrics = list(table_metrics(data))
    params = {PARAM + key: key for key in data.info.params}
    frame = data.rows.rename(columns=params)
    frame.insert(0, "study", data.info.name)
    columns = [
        "study",
        *params.values(),
        "n",
        *metrics,
        *(f"{m}_std" for m in metrics),
        *(f"{m}_ci" for m in metrics),
        "value",
        "value_std",
        "value_ci",
        "best",
        "overlaps_best",
    ]
    return frame[columns]


def _hours_dict(hours: StudyHours | None) -> dict[str, Any]:
    """GPU-hours from the scheduler and the manifests, for the JSON totals: the study's and per trial."""
    if hours is None:
        return {}
    trials = [item.to_dict() for item in hours.trials]
    return {"gpu_hours_used": hours.used, "gpu_hours_wasted": hours.wasted, "gpu_hours_by_trial": trials}


def csv_text(datas: list[ReportData]) -> str:
    """One CSV of every study's rows (a `study` column tells them apart)."""
    if not datas:
        return ""
    buffer = io.StringIO()
    pd.concat([machine_frame(data) for data in datas], ignore_index=True).to_csv(buffer, index=False)
    return buffer.getvalue()


def json_text(datas: list[ReportData]) -> str:
    """A JSON list with one object per study: name, metric, direction, rows and totals."""
    studies = []
    for data in datas:
        frame = machine_frame(data).drop(columns=["study"])
        totals = data.totals
        studies.append(
            {
                "study": data.info.name,
                "metric": data.info.metric,
                "direction": data.info.direction,
                "rows": json.loads(frame.to_json(orient="records", double_precision=15)),  # NaN -> null
                "environment": [spread.to_dict() for spread in data.environment],
                "confirmation": None if data.confirmation is None else data.confirmation.to_dict(),
                "pruning": None if data.savings is None else data.savings.to_dict(),
                "totals": {
                    **{key: value for key, value in totals.__dict__.items() if key != "hours"},
                    "gpu_hours": totals.gpu_hours,
                    **_hours_dict(totals.hours),
                },
            }
        )
    return json.dumps(studies, indent=2) + "\n"
