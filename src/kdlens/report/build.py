"""Compute -> ``explain.json`` -> ``figures/*.png`` -> ``report.html``, in a run or from a folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kdlens.errors import KdlensError
from kdlens.run import RunFolder

# The explain package imports Captum and SciPy: imported where used, so the CLI starts fast.


def render_report(
    run: RunFolder | str | Path, explain: dict[str, Any], metrics: dict[str, Any]
) -> Path:
    """Draw the figures and write report.html (in the run folder ``run``) from saved results only."""
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    from kdlens.report.figures import save_figures
    from kdlens.report.html import render_html
    from kdlens.report.sections import extra_sections

    figures = save_figures(explain, folder.figures)
    title = f"kdlens report: {folder.path.resolve().name}"
    page = render_html(metrics, explain, figures, title, extra_sections(folder, metrics))
    folder.write_bytes(folder.report, page.encode("utf-8"))
    return folder.report


def redraw_stage_figures(folder: RunFolder) -> None:
    """Redraw the figures other stages drew from the JSON they saved (readable students'
    figures and rules, deployment plots), so ``kdlens report`` draws them with this code too."""
    if folder.readable_results.is_file():
        from kdlens.readable.figures import save_readable_figures

        doc = folder.read_json(folder.readable_results)
        save_readable_figures(doc, folder.figure, folder.rules)
    if folder.compression_table.is_file():
        from kdlens.deploy.figures import save_plots

        table = folder.read_json(folder.compression_table)
        pruning = folder.read_json(folder.pruning_table) if folder.pruning_table.is_file() else None
        save_plots(folder, table, pruning)


def explain_and_save(folder: RunFolder, inp) -> dict[str, Any]:
    """explain.json and every model's test logits (so a report can redo models it cannot
    rebuild, such as surrogates)."""
    from safetensors.torch import save

    from kdlens.explain import compute_explanations

    explain = compute_explanations(inp)
    folder.write_json(folder.explain, explain)
    state = {n: lg.float().cpu().contiguous() for n, lg in inp.test_logits.items()}
    folder.write_bytes(folder.test_logits, save(state))
    return explain


def add_explain_keys(models: dict[str, dict[str, Any]], explain: dict[str, Any]) -> None:
    from kdlens.explain import metrics_keys

    for name, keys in metrics_keys(explain).items():
        if name in models:
            models[name].update(keys)


def report_run(
    run_dir: str | Path, overrides: list[str] | None = None, compute: bool = True
) -> Path:
    """``kdlens report RUN_DIR``: (re)compute explain.json, add its keys to metrics.json, render.

    With ``compute=False`` only the figures and the page are redrawn from the saved JSON.
    """
    folder = RunFolder(run_dir)
    if not folder.path.is_dir():
        raise KdlensError(f"run folder {folder.path} does not exist")
    if compute:
        from kdlens.explain import from_run_dir

        inp = from_run_dir(folder.path, overrides)  # checks the folder before locking it
        with folder.locked():
            start = time.perf_counter()
            explain = explain_and_save(folder, inp)
            metrics = folder.read_json(folder.metrics)
            add_explain_keys(metrics["models"], explain)
            metrics.setdefault("timings", {})["explain"] = time.perf_counter() - start
            folder.write_json(folder.metrics, metrics)
            redraw_stage_figures(folder)
            return render_report(folder, explain, metrics)
    if not folder.explain.is_file():
        raise KdlensError(f"{folder.explain} not found; run `kdlens report {folder.path}` first")
    with folder.locked():
        explain = folder.read_json(folder.explain)
        metrics = folder.read_json(folder.metrics)
        redraw_stage_figures(folder)
        return render_report(folder, explain, metrics)
