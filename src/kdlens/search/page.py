"""``tune.html``: Optuna's plots of a tune, drawn from the saved trials.json (compute -> JSON ->
render), in one page that opens offline (the plotly library is embedded, no CDN)."""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from kdlens.utils import write_bytes_atomic

log = logging.getLogger("kdlens")


def study_from_table(table: dict[str, Any]):
    """An in-memory Optuna study holding the finished trials of a saved trials.json."""
    import optuna
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState, create_trial

    distributions = {k: json_to_distribution(v) for k, v in table["distributions"].items()}
    study = optuna.create_study(direction=table["objective"]["direction"])
    for t in table["trials"]:
        state = TrialState[t["state"]]
        if state not in (TrialState.COMPLETE, TrialState.PRUNED) or not t["params"]:
            continue
        params = {k: v for k, v in t["params"].items() if k in distributions}
        study.add_trial(
            create_trial(
                state=state,
                value=t["value"] if state == TrialState.COMPLETE else None,
                params=params,
                distributions={k: distributions[k] for k in params},
                intermediate_values={int(k): v for k, v in t["intermediate"].items()},
            )
        )
    return study


def figures(table: dict[str, Any]) -> list[tuple[str, Any]]:
    """(title, plotly figure) for each plot the trials allow."""
    import optuna.visualization as vis
    from optuna.trial import TrialState

    study = study_from_table(table)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    metric = f"{table['objective']['model']} {table['objective']['metric']}"
    params = list(table["space"])
    plots = [("Optimisation history", lambda: vis.plot_optimization_history(study))]
    if any(t.intermediate_values for t in study.trials):
        plots.append(
            (
                "Learning curves (pruned trials stop early)",
                lambda: vis.plot_intermediate_values(study),
            )
        )
    if len(complete) >= 2:
        plots.append(("Parameter importances", lambda: vis.plot_param_importances(study)))
        if len(params) >= 2:
            plots.append(
                (f"{metric} over each pair of parameters", lambda: vis.plot_contour(study))
            )
        else:
            plots.append((f"{metric} against {params[0]}", lambda: vis.plot_slice(study)))
    out = []
    for title, draw in plots:
        try:
            out.append((title, draw()))
        except Exception as e:  # noqa: BLE001 - a plot the trials cannot support is left out
            log.warning("tune.html: %s left out (%s)", title.lower(), e)
    return out


def render(table: dict[str, Any], document: dict[str, Any]) -> str:
    parts = []
    for i, (title, fig) in enumerate(figures(table)):
        fig.update_layout(title=None, height=520 if "pair" in title else 420)
        body = fig.to_html(full_html=False, include_plotlyjs=i == 0)  # the library, once
        parts.append(f"<h2>{html.escape(title)}</h2>\n{body}")
    objective = table["objective"]
    best = document.get("best")
    lines = [
        f"study <b>{html.escape(str(table['study']))}</b>: "
        + ", ".join(f"{n} {s.lower()}" for s, n in table["counts"].items()),
        f"objective: {objective['direction']} the validation {objective['metric']} of the "
        f"distilled student ({objective['model']}); the test split chooses nothing",
        f"epochs trained by the distilled students of all trials: {table['epochs']}",
    ]
    if best:
        params = ", ".join(f"{k} = {v}" for k, v in best["params"].items())
        lines.append(f"best: trial {best['number']}, {best['value']:.4f} ({html.escape(params)})")
    final = document.get("final")
    if final:
        lines.append(f"best config re-run on the test split: {html.escape(final['verdict'])}")
    items = "".join(f"<li>{line}</li>" for line in lines)
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>kdlens tune</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}</style></head>"
        f"<body><h1>kdlens tune</h1><ul>{items}</ul>\n" + "\n".join(parts) + "</body></html>\n"
    )


def save_tune_page(table: dict[str, Any], document: dict[str, Any], path: Path) -> None:
    write_bytes_atomic(path, render(table, document).encode())
