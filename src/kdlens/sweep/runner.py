"""``kdlens sweep``: run every cell of a grid for N seeds, reusing one teacher per seed.

Layout of the sweep folder::

    teachers/<key>/checkpoints/teacher.safetensors   one per seed (and per teacher-side config)
    cells/<cell>/seed_<s>/                           an ordinary run folder (metrics.json, ...)
    sweep.json, sweep.csv, sweep.png                 mean and std over seeds, per cell

A run folder with a metrics.json is finished and is read, not rerun: a stopped sweep resumes.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import re
import statistics
from pathlib import Path
from typing import Any

import yaml

from kdlens.config import RunConfig, load_config
from kdlens.errors import ConfigError
from kdlens.utils import read_json, write_json

log = logging.getLogger("kdlens")

METRICS = ("accuracy", "fidelity")
MODELS = ("kd", "scratch", "teacher")
_RESERVED_KEYS = ("seed", "teacher.checkpoint")


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["distill.method=kd,dkd", "distill.alpha=0,0.5"]`` -> {key: [values]}; values are YAML."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: expected KEY=v1,v2,...")
        key, raw = (s.strip() for s in item.split("=", 1))
        if not key or not raw:
            raise ConfigError(f"--grid {item!r}: expected KEY=v1,v2,...")
        if key in _RESERVED_KEYS:
            raise ConfigError(f"--grid {key}: set by the sweep itself (use --seeds)")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice")
        try:
            grid[key] = [yaml.safe_load(v) for v in raw.split(",")]
        except yaml.YAMLError:
            raise ConfigError(f"--grid {item!r}: a value is not valid YAML") from None
    if not grid:
        raise ConfigError("sweep: give at least one --grid KEY=v1,v2,...")
    return grid


def grid_cells(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order given."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def cell_name(cell: dict[str, Any]) -> str:
    """A readable, file-safe folder name, unique through a short hash of the exact values."""
    text = "__".join(f"{k}={v}" for k, v in cell.items())
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "-", text)[:80]
    digest = hashlib.sha1(json.dumps(cell, sort_keys=True).encode()).hexdigest()[:8]
    return f"{safe}__{digest}"


def _overrides(cell: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in cell.items()]  # JSON is valid YAML


def _teacher_key(config: RunConfig) -> str:
    """Everything a teacher's training depends on: its spec, the data, the seed, the holdout."""
    parts = {
        "teacher": config.teacher.model_dump(mode="json"),
        "data": config.data.model_dump(mode="json"),
        "seed": config.seed,
        "holdout": config.distill.transfer.holdout,
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def ensure_teacher(config: RunConfig, folder: Path, progress: bool = False) -> Path:
    """Train the teacher once into ``folder`` (or find it there); returns its checkpoint."""
    from kdlens.pipeline import run
    from kdlens.run import RunFolder

    run_folder = RunFolder(folder)
    checkpoint = run_folder.weights("teacher")
    if run_folder.done("teacher").is_file():
        return checkpoint
    run(config, folder, overwrite=True, progress=progress, only=("teacher",))
    return checkpoint


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def summarize_runs(metrics: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and std over seeds of accuracy and fidelity of each model."""
    out: dict[str, dict[str, Any]] = {}
    for model in MODELS:
        for metric in METRICS:
            values = [m["models"][model][metric] for m in metrics if metric in m["models"][model]]
            if values:
                out.setdefault(model, {})[metric] = _summary(values)
    return out


def run_sweep(
    config_path: str | Path | None,
    grid: dict[str, list[Any]],
    seeds: int,
    out_dir: str | Path,
    overrides: list[str] | None = None,
    progress: bool = False,
    teachers_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run (or resume) the sweep; writes sweep.json, sweep.csv and sweep.png and returns the JSON.

    ``teachers_dir`` (default ``<out>/teachers``) may be shared by sweeps over the same teachers.
    """
    from kdlens.pipeline import run
    from kdlens.run import RunFolder

    if seeds < 1:
        raise ConfigError("sweep: --seeds must be at least 1")
    out = Path(out_dir)
    overrides = list(overrides or [])
    base_seed = load_config(config_path, overrides).seed
    cells = grid_cells(grid)
    # Resolve every (cell, seed) config first: a bad value fails before anything trains.
    configs = {
        (i, s): load_config(config_path, [*overrides, *_overrides(cell), f"seed={base_seed + s}"])
        for i, cell in enumerate(cells)
        for s in range(seeds)
    }
    results: list[dict[str, Any]] = []
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(cells))}
    for s in range(seeds):
        for i, cell in enumerate(cells):
            config = configs[(i, s)]
            run_dir = out / "cells" / cell_name(cell) / f"seed_{config.seed}"
            if RunFolder(run_dir).metrics.is_file():
                log.info("sweep: %s seed %d finished earlier, reusing it", cell, config.seed)
            else:
                if config.teacher.checkpoint is None:
                    teachers = Path(teachers_dir) if teachers_dir else out / "teachers"
                    teacher = ensure_teacher(config, teachers / _teacher_key(config))
                    config = config.model_copy(deep=True)
                    config.teacher.checkpoint = str(teacher.resolve())
                    # kdlens trained it on these very inputs: the loaded-teacher check looks
                    # for a teacher fed what it does not expect, which this one cannot be.
                    config.teacher.accept_weak = True
                log.info("sweep: running %s seed %d", cell, config.seed)
                run(config, run_dir, overwrite=True, progress=progress)
            runs[i].append({"seed": config.seed, "dir": str(run_dir.relative_to(out))})
    for i, cell in enumerate(cells):
        metrics = [read_json(RunFolder(out / r["dir"]).metrics) for r in runs[i]]
        results.append(
            {"cell": cell, "name": cell_name(cell), "runs": runs[i], **summarize_runs(metrics)}
        )
    document = {
        "config": str(config_path) if config_path else None,
        "overrides": overrides,
        "grid": grid,
        "seeds": [base_seed + s for s in range(seeds)],
        "cells": results,
    }
    write_json(out / "sweep.json", document)
    write_csv(document, out / "sweep.csv")
    from kdlens.sweep.plot import save_sweep_plot

    save_sweep_plot(document, out / "sweep.png")
    return document


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


def write_csv(document: dict[str, Any], path: Path) -> None:
    rows = csv_rows(document)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
