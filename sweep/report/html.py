"""The report page `NAME.html`: plotly figures of a study in one self-contained file (plotly.js inlined).

Figures are built as plain dicts from `ReportData` frames and written with `validate=False`: a
10,000-trial study would spend seconds in plotly's per-trace validation otherwise.
"""

from __future__ import annotations

import html
import warnings
from typing import Any

import numpy as np
import optuna
import pandas as pd
import plotly.io as pio
from optuna.trial import create_trial

from sweep.report.data import ACCURACIES, PARAM, ReportData
from sweep.report.table import (
    MISSING,
    best_note,
    environment_line,
    format_value,
    param_name,
    table_cells,
    totals_line,
)
from sweep.store.trial_frames import distribution
from sweep.study.spec import maximizes

IMPORTANCE_MAX_TRIALS = 300  # beyond this a seeded sample: each trial copied into a study costs ~0.3 ms
# A light look (white, grey grid) set by hand: plotly's named templates live in plotly.graph_objs,
# whose import alone takes 0.25 s.
STYLE: dict[str, Any] = {"plot_bgcolor": "white", "paper_bgcolor": "white"}
GRID = {"gridcolor": "#e5e5e5", "zerolinecolor": "#e5e5e5"}


FEW_TRIALS = 20  # below this many complete trials, the importance of a parameter says little
FEW_TRIALS_NOTE = (
    "From {n} complete trials only: importance needs many trials per parameter value to mean much; "
    "read it as a rough hint."
)


def table_html(data: ReportData) -> str:
    """The report's comparison table (what `sweep report` prints) as an HTML table, best row in bold."""
    if not len(data.rows):
        return f"<p>No complete trials yet in study {html.escape(data.info.name)}.</p>"
    headers, rows = table_cells(data)
    lines = ["<tr>" + "".join(f"<th>{html.escape(cell)}</th>" for cell in headers) + "</tr>"]
    for cells, best in rows:
        texts = [f"<b>{html.escape(c)}</b>" if best and c != MISSING else html.escape(c) for c in cells]
        lines.append("<tr>" + "".join(f"<td>{text}</td>" for text in texts) + "</tr>")
    style = "border-collapse:collapse;text-align:right"
    notes = [best_note(data), *([environment_line(data)] if data.environment else [])]
    paragraphs = "".join(f"<p>{html.escape(note.replace('**', ''))}</p>" for note in notes)
    return f'<table style="{style}" cellpadding="4" border="1">{"".join(lines)}</table>{paragraphs}'


def html_page(data: ReportData) -> str:
    """The whole page: learning curves, optimisation history, parameter importance, parallel coordinates."""
    sections: list[tuple[str, dict[str, Any] | str]] = [
        (f"{data.info.metric} per epoch", curves_figure(data)),
        ("Optimisation history", history_figure(data)),
    ]
    if len(_varied(data)) >= 2:
        sections.append(("Parameter importance", importance_figure(data)))
    if _varied(data):
        sections.append(("Parallel coordinates", parallel_figure(data)))
    name = html.escape(data.info.name)
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>sweep report: {name}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}</style>",
        "</head><body>",
        f"<h1>Study {name}</h1>",
        table_html(data),
        f"<p>{html.escape(totals_line(data.totals))}</p>",
    ]
    include_js = True  # plotly.js goes in once, with the first figure: the page works offline
    for index, (title, figure) in enumerate(sections):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if title == "Parameter importance" and data.totals.complete < FEW_TRIALS:
            parts.append(f"<p>{FEW_TRIALS_NOTE.format(n=data.totals.complete)}</p>")
        if isinstance(figure, str):  # no figure, a sentence saying why
            parts.append(f"<p>{html.escape(figure)}</p>")
            continue
        div = pio.to_html(
            figure, include_plotlyjs=include_js, full_html=False, validate=False, div_id=_div_id(index)
        )
        parts.append(div)
        include_js = False
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _div_id(index: int) -> str:
    return ("curves", "history", "importance", "parallel")[index] if index < 4 else f"figure{index}"


def _varied(data: ReportData) -> list[str]:
    """The params that take more than one value among the trials."""
    frame = data.trials
    return [key for key in data.info.params if frame[PARAM + key].nunique(dropna=True) > 1]


def _layout(title: str, x: str, y: str, *, x_max: float | None = None) -> dict[str, Any]:
    # x counts epochs or trials: below 20 of them, one tick each (plotly's own ticks would read 0.5, 1.5)
    ticks = {"dtick": 1} if x_max is not None and x_max <= 20 else {}
    return {
        "title": {"text": title},
        "xaxis": {"title": {"text": x}, **ticks, **GRID},
        "yaxis": {"title": {"text": y}, **GRID},
        "height": 480,
        **STYLE,
    }


def curves_figure(data: ReportData) -> dict[str, Any] | str:
    """One line per trial: the study's metric (accuracies in %) against the epoch."""
    curves = data.curves
    if curves.empty:
        return "No trial has finished an epoch yet."
    labels = _trial_labels(data)
    numbers = curves["number"].tolist()
    metric = data.info.metric
    scale = 100 if metric in ACCURACIES else 1
    epochs, values = curves["epoch"].tolist(), (curves["value"] * scale).tolist()
    starts = [0, *np.flatnonzero(np.diff(curves["number"].to_numpy())) + 1]  # rows are grouped by trial
    ends = [*starts[1:], len(numbers)]
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": epochs[start:end],  # list slices: 10,000 numpy splits and tolist() calls cost 0.2 s
            "y": values[start:end],
            "name": labels[numbers[start]],
        }
        for start, end in zip(starts, ends, strict=True)
    ]
    axis = f"{metric} (%)" if scale == 100 else metric
    layout = _layout(f"{metric} per epoch, one line per trial", "epoch", axis, x_max=max(epochs))
    return {"data": traces, "layout": layout}


def _trial_labels(data: ReportData) -> dict[int, str]:
    """`#7 optimizer=Adam lr=0.1` per trial number; each distinct value is formatted once."""
    frame = data.trials
    labels = "#" + frame["number"].astype(str)
    for key in data.shown:
        column = frame[PARAM + key]
        texts = {value: format_value(value) for value in column.dropna().unique()}
        labels = labels + f" {key}=" + column.map(texts).fillna(format_value(None))
    return dict(zip(frame["number"].tolist(), labels.tolist(), strict=True))


def history_figure(data: ReportData) -> dict[str, Any] | str:
    """Each complete trial's value against its number, and the best value so far."""
    done = data.trials[(data.trials["state"] == "COMPLETE") & data.trials["value"].notna()]
    if done.empty:
        return "No complete trials yet."
    scale = 100 if data.info.metric in ACCURACIES else 1  # in % like the table and the curves
    values = done["value"] * scale
    best = values.cummax() if maximizes(data.info.direction) else values.cummin()
    numbers = done["number"].tolist()
    traces = [
        {"type": "scatter", "mode": "markers", "x": numbers, "y": values.tolist(), "name": data.info.metric},
        {"type": "scatter", "mode": "lines", "x": numbers, "y": best.tolist(), "name": "best so far"},
    ]
    axis = f"{data.info.metric} (%)" if scale == 100 else data.info.metric
    layout = _layout("Optimisation history", "trial", axis, x_max=max(numbers))
    return {"data": traces, "layout": layout}


def importance_figure(data: ReportData) -> dict[str, Any] | str:
    """Optuna's PED-ANOVA importance of each param, on a seeded sample of trials for big studies."""
    done = data.trials[(data.trials["state"] == "COMPLETE") & data.trials["value"].notna()]
    if len(done) < 3:
        return f"Needs 3 or more complete trials; the study has {len(done)}."
    sample = (
        done if len(done) <= IMPORTANCE_MAX_TRIALS else done.sample(IMPORTANCE_MAX_TRIALS, random_state=0)
    )
    try:
        with warnings.catch_warnings():  # "few trials" warnings would clutter the report's output
            warnings.simplefilter("ignore")
            # PED-ANOVA, Optuna's default since 5.0, named so that the title holds with Optuna 4 too
            # (whose default, fANOVA, needs scikit-learn); it is deterministic: the same page twice
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            importances = optuna.importance.get_param_importances(
                _study_of(data, sample), evaluator=evaluator
            )
    except (ValueError, RuntimeError, ImportError) as err:  # e.g. no param common to the complete trials
        return f"Not available for this study: {err}"
    if not importances:
        return "Not available: no param varies among the complete trials."
    keys = list(importances)[::-1]  # the most important bar on top
    trace = {
        "type": "bar",
        "orientation": "h",
        "x": [importances[key] for key in keys],
        "y": [param_name(key) for key in keys],
    }
    title = "Parameter importance (PED-ANOVA)"
    if len(sample) < len(done):
        title += f", on {len(sample):,} of {len(done):,} complete trials"
    return {"data": [trace], "layout": _layout(title, "importance", "")}


def _study_of(data: ReportData, sample: pd.DataFrame) -> optuna.Study:
    """An in-memory study of the `sample` trials: what the importance evaluators take."""
    params = data.params[data.params["number"].isin(sample["number"])]
    by_trial: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for number, name, value, dist in params.itertuples(index=False):
        values, dists = by_trial.setdefault(int(number), ({}, {}))
        values[name], dists[name] = value, distribution(dist)
    study = optuna.create_study(direction=optuna.study.StudyDirection[data.info.direction.upper()])
    study.add_trials(
        [
            create_trial(
                params=by_trial.get(number, ({}, {}))[0],
                distributions=by_trial.get(number, ({}, {}))[1],
                value=value,
            )
            for number, value in zip(sample["number"].tolist(), sample["value"].tolist(), strict=True)
        ]
    )
    return study


def parallel_figure(data: ReportData) -> dict[str, Any] | str:
    """Parallel coordinates: each varied param and the value of every complete trial."""
    done = data.trials[(data.trials["state"] == "COMPLETE") & data.trials["value"].notna()]
    if done.empty:
        return "No complete trials yet."
    dimensions = [_dimension(param_name(key), done[PARAM + key]) for key in _varied(data)]
    values = done["value"].tolist()
    dimensions.append({"label": data.info.metric, "values": values})
    trace = {
        "type": "parcoords",
        "dimensions": dimensions,
        "line": {"color": values, "colorscale": "Viridis", "showscale": True},
    }
    layout = {"title": {"text": "Parallel coordinates"}, "height": 480}
    return {"data": [trace], "layout": layout}


def _dimension(label: str, column: pd.Series) -> dict[str, Any]:
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all() and not column.map(lambda v: isinstance(v, bool)).any():
        return {"label": label, "values": numeric.tolist()}
    # categorical: plot the choice's index, label the ticks with the choice
    choices = list(dict.fromkeys(column.tolist()))
    codes = column.map({choice: index for index, choice in enumerate(choices)})
    ticks = [format_value(choice) for choice in choices]
    return {
        "label": label,
        "values": codes.tolist(),
        "tickvals": list(range(len(choices))),
        "ticktext": ticks,
    }
