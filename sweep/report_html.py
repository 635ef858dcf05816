"""The report page `NAME.html`: plotly figures of a study in one self-contained file (plotly.js inlined).

Figures are built as plain dicts from `ReportData` frames and written with `validate=False`: a
10,000-trial study would spend seconds in plotly's per-trace validation otherwise.
"""

from __future__ import annotations

import functools
import html
from typing import Any

import numpy as np
import optuna
import pandas as pd
import plotly.io as pio

from sweep.report_data import PARAM, ReportData
from sweep.report_table import format_value, param_name, totals_line

IMPORTANCE_MAX_TRIALS = 2000  # fANOVA on more complete trials than this takes seconds; a sample is as good


def html_page(data: ReportData, study: optuna.Study) -> str:
    """The whole page: learning curves, optimisation history, parameter importance, parallel coordinates."""
    sections: list[tuple[str, dict[str, Any] | str]] = [
        ("Validation accuracy per epoch", curves_figure(data)),
        ("Optimisation history", history_figure(data)),
    ]
    if len(_varied(data)) >= 2:
        sections.append(("Parameter importance", importance_figure(data, study)))
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
        f"<p>{html.escape(totals_line(data.totals))}</p>",
    ]
    include_js = True  # plotly.js goes in once, with the first figure: the page works offline
    for index, (title, figure) in enumerate(sections):
        parts.append(f"<h2>{html.escape(title)}</h2>")
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


def _layout(title: str, x: str, y: str) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "xaxis": {"title": {"text": x}},
        "yaxis": {"title": {"text": y}},
        "height": 480,
        "template": _template(),
    }


@functools.cache
def _template() -> dict[str, Any]:
    # validate=False skips plotly's lookup of template names: the template goes in as its dict
    return pio.templates["plotly_white"].to_plotly_json()


def curves_figure(data: ReportData) -> dict[str, Any] | str:
    """One line per trial: validation accuracy (%) against the epoch."""
    curves = data.curves
    if curves.empty:
        return "No trial has finished an epoch yet."
    labels = _trial_labels(data)
    numbers = curves["number"].to_numpy()
    starts = np.flatnonzero(np.r_[True, numbers[1:] != numbers[:-1]])  # rows are grouped by trial
    epochs = np.split(curves["epoch"].to_numpy(), starts[1:])
    values = np.split(curves["val_acc"].to_numpy() * 100, starts[1:])
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": x.tolist(),
            "y": y.tolist(),
            "name": labels[int(numbers[start])],
        }
        for start, x, y in zip(starts, epochs, values, strict=True)
    ]
    layout = _layout("Validation accuracy per epoch, one line per trial", "epoch", "val acc (%)")
    return {"data": traces, "layout": layout}


def _trial_labels(data: ReportData) -> dict[int, str]:
    frame = data.trials
    labels = {}
    columns = [PARAM + key for key in data.shown]
    for row in frame[["number", *columns]].itertuples(index=False):
        params = " ".join(
            f"{key}={format_value(value)}" for key, value in zip(data.shown, row[1:], strict=True)
        )
        labels[int(row[0])] = f"#{row[0]} {params}".rstrip()
    return labels


def history_figure(data: ReportData) -> dict[str, Any] | str:
    """Each complete trial's value against its number, and the best value so far."""
    done = data.trials[(data.trials["state"] == "COMPLETE") & data.trials["value"].notna()]
    if done.empty:
        return "No complete trials yet."
    values = done["value"]
    best = values.cummax() if data.info.direction == "maximize" else values.cummin()
    numbers = done["number"].tolist()
    traces = [
        {"type": "scatter", "mode": "markers", "x": numbers, "y": values.tolist(), "name": data.info.metric},
        {"type": "scatter", "mode": "lines", "x": numbers, "y": best.tolist(), "name": "best so far"},
    ]
    return {"data": traces, "layout": _layout("Optimisation history", "trial", data.info.metric)}


def importance_figure(data: ReportData, study: optuna.Study) -> dict[str, Any] | str:
    """Optuna's fANOVA importance of each param, on a sample of trials for big studies."""
    done = data.trials[(data.trials["state"] == "COMPLETE") & data.trials["value"].notna()]
    if len(done) < 3:
        return f"Needs 3 or more complete trials; the study has {len(done)}."
    target = study if len(done) <= IMPORTANCE_MAX_TRIALS else _sampled_study(study, done)
    try:
        importances = optuna.importance.get_param_importances(target)
    except (ValueError, RuntimeError) as err:  # e.g. params that no complete trial has in common
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
    title = "Parameter importance (fANOVA)"
    if target is not study:
        title += f", on {IMPORTANCE_MAX_TRIALS:,} of {len(done):,} complete trials"
    return {"data": [trace], "layout": _layout(title, "importance", "")}


def _sampled_study(study: optuna.Study, done: pd.DataFrame) -> optuna.Study:
    """An in-memory copy of `study` with a seeded random sample of its complete trials."""
    numbers = set(done["number"].sample(IMPORTANCE_MAX_TRIALS, random_state=0).tolist())
    trials = [t for t in study.get_trials(deepcopy=False) if t.number in numbers]
    sample = optuna.create_study(direction=study.direction)
    sample.add_trials(trials)
    return sample


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
    layout = {"title": {"text": "Parallel coordinates"}, "height": 480, "template": _template()}
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
