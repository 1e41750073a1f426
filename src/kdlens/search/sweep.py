"""``kdlens sweep``: every cell of a grid for N seeds, as an Optuna study whose trials are the
(cell, seed) runs, enqueued once; workers on one or many machines take them until none is left.

Each trial is an ordinary run folder (``trials/<number>``); the teacher of each seed is trained
once (``teachers/<key>``) and given to every cell as ``teacher.checkpoint``. Rerunning the same
command resumes: finished trials are read from the study, a killed one is queued again.
Outputs (drawn from the study alone, so any machine can write them): ``sweep.json`` (per cell:
values, run folders, mean/std/values over seeds of the test accuracy and fidelity of ``kd``,
``scratch`` and ``teacher``), ``sweep.csv`` (one row per cell) and ``sweep.png``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import re
import statistics
from pathlib import Path
from typing import Any

from kdlens.config import load_config
from kdlens.errors import ConfigError
from kdlens.search import storage as st
from kdlens.search.folder import SearchFolder
from kdlens.search.launch import (
    builds,
    check_finished,
    check_runs,
    default_study_name,
    launch,
    unfinished,
)
from kdlens.search.space import Scalar, check_space, grid_space, with_values
from kdlens.search.trial import TEST_METRICS, TEST_MODELS
from kdlens.search.worker import Job
from kdlens.utils import write_bytes_atomic

log = logging.getLogger("kdlens")

A = st.ATTR
METRICS = TEST_METRICS
MODELS = TEST_MODELS


def grid_cells(grid: dict[str, list[Scalar]]) -> list[dict[str, Scalar]]:
    """Every combination of the grid's values, in the order given."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def cell_name(cell: dict[str, Any]) -> str:
    """A readable, file-safe name, unique through a short hash of the exact values."""
    text = "__".join(f"{k}={v}" for k, v in cell.items())
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "-", text)[:80]
    digest = hashlib.sha1(json.dumps(cell, sort_keys=True).encode()).hexdigest()[:8]
    return f"{safe}__{digest}"


def run_sweep(
    config_path: str | Path | None,
    grid: dict[str, list[Scalar]],
    seeds: int,
    out_dir: str | Path,
    overrides: list[str] | None = None,
    progress: bool = False,
    teachers_dir: str | Path | None = None,
    storage: str | None = None,
    study: str | None = None,
    workers: int = 1,
    tracking: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Run (or resume, or join) the sweep; writes sweep.json, sweep.csv and sweep.png and
    returns the JSON. ``teachers_dir`` (default ``<out>/teachers``) may be shared by sweeps."""
    if seeds < 1:
        raise ConfigError("sweep: --seeds must be at least 1")
    if workers < 1:
        raise ConfigError("sweep: --workers must be at least 1")
    overrides = list(overrides or [])
    base = load_config(config_path, overrides)
    seed_values = [base.seed + s for s in range(seeds)]
    space = {**grid_space(grid), "seed": grid_space({"seed": seed_values})["seed"]}
    check_space(base, grid_space(grid), "--grid")
    folder = SearchFolder(out_dir)
    cells = grid_cells(grid)
    configs = [with_values(base, cell, f"--grid {cell}: ") for cell in cells]
    check_runs(
        [base, *(c for c, cell in zip(configs, cells, strict=True) if any(map(builds, cell)))],
        folder,
    )
    name = study or default_study_name(out_dir)
    job = Job(
        kind="sweep",
        folder=str(folder.path.resolve()),
        storage=storage,
        study=name,
        base=base.model_dump(mode="json"),
        space={k: p.spec for k, p in space.items()},
        teachers=str(Path(teachers_dir).resolve()) if teachers_dir else None,
        tracking=tracking,
        tracking_uri=tracking_uri,
        progress=progress,
    )
    wanted = st.search_attrs("sweep", job.space, "val_accuracy", job.base)

    def enqueue(new_study) -> None:
        # Seed by seed, as the grid is given: the first seed's cells finish first.
        for seed in seed_values:
            for cell in cells:
                params = {**cell, "seed": seed}
                new_study.enqueue_trial(params, user_attrs={A + "params": params})

    done, crashed = launch(job, workers, "maximize", wanted, enqueue)
    if done is None:  # not the main process under torchrun: it only trained
        return {}
    trials = done.get_trials(deepcopy=False)
    document = {
        "config": str(config_path) if config_path else None,
        "overrides": overrides,
        "study": name,
        **sweep_document(trials, grid, seed_values),
    }
    write_outputs(document, folder)
    check_finished(crashed, trials)
    return document


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def summarize_runs(tests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and std over seeds of the test accuracy and fidelity of each model."""
    out: dict[str, dict[str, Any]] = {}
    for model in MODELS:
        for metric in METRICS:
            values = [t[model][metric] for t in tests if metric in t.get(model, {})]
            if values:
                out.setdefault(model, {})[metric] = _summary(values)
    return out


def sweep_document(trials, grid: dict[str, list[Scalar]], seeds: list[int]) -> dict[str, Any]:
    """The sweep's results from its finished trials (the study alone: any machine can write it)."""
    from optuna.trial import TrialState

    retried = st.retried(trials)
    cells = []
    for cell in grid_cells(grid):
        mine = [t for t in trials if {k: t.params.get(k) for k in cell} == cell]
        complete = sorted(
            (t for t in mine if t.state == TrialState.COMPLETE), key=lambda t: t.params["seed"]
        )
        runs = [
            {
                "seed": t.params["seed"],
                "dir": t.user_attrs.get(A + "folder"),
                "trial": t.number,
                "val_accuracy": t.value,
            }
            for t in complete
        ]
        failed = [
            {
                "seed": t.params.get("seed"),
                "trial": t.number,
                "error": t.user_attrs.get(A + "error"),
            }
            for t in mine
            if t.state == TrialState.FAIL and t.number not in retried
        ]
        entry = {"cell": cell, "name": cell_name(cell), "runs": runs}
        if failed:
            entry["failed"] = failed
        entry.update(summarize_runs([t.user_attrs.get(A + "test", {}) for t in complete]))
        cells.append(entry)
    return {"grid": grid, "seeds": seeds, "cells": cells, "unfinished": unfinished(trials)}


def csv_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cell: the swept values, then mean and std over seeds."""
    rows = []
    for c in document["cells"]:
        row: dict[str, Any] = {**c["cell"], "seeds": len(c["runs"])}
        for model in MODELS:
            prefix = "" if model == "kd" else f"{model}_"
            for metric in METRICS:
                if metric in c.get(model, {}):
                    row[f"{prefix}{metric}_mean"] = c[model][metric]["mean"]
                    row[f"{prefix}{metric}_std"] = c[model][metric]["std"]
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows as CSV, the columns in first-seen order; written atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, text.getvalue().encode())


def write_outputs(document: dict[str, Any], folder: SearchFolder) -> None:
    from kdlens.search.plot import save_sweep_plot

    folder.write_json(folder.file("sweep.json"), document)
    write_csv(csv_rows(document), folder.file("sweep.csv"))
    save_sweep_plot(document, folder.file("sweep.png"))
