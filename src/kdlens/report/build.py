"""Compute -> ``explain.json`` -> ``figures/*.png`` -> ``report.html``, in a run or from a folder."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from kdlens.errors import KdlensError
from kdlens.utils import read_json, write_bytes_atomic, write_json

log = logging.getLogger("kdlens")

# The explain package imports Captum and SciPy: imported where used, so `import kdlens.pipeline`
# (and the CLI's start-up) stays fast.
EXPLAIN_FILE = "explain.json"
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"


def render_report(run_dir: str | Path, explain: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Draw the figures and write report.html from saved results only."""
    from kdlens.report.figures import save_figures
    from kdlens.report.html import render_html
    from kdlens.report.sections import extra_sections

    run = Path(run_dir)
    figures = save_figures(explain, run / FIGURES_DIR)
    title = f"kdlens report: {run.resolve().name}"
    page = render_html(metrics, explain, figures, title, extra_sections(run, metrics))
    write_bytes_atomic(run / REPORT_FILE, page.encode("utf-8"))
    return run / REPORT_FILE


def _explain_and_save(run: Path, inp) -> dict[str, Any]:
    from kdlens.explain import compute_explanations
    from kdlens.explain.inputs import LOGITS_FILE

    explain = compute_explanations(inp)
    write_json(run / EXPLAIN_FILE, explain)
    _save_logits(run / LOGITS_FILE, inp)
    return explain


def _save_logits(path: Path, inp) -> None:
    """Every model's test logits, so ``kdlens report`` can redo the run's models it cannot rebuild."""
    from safetensors.torch import save

    state = {n: lg.float().cpu().contiguous() for n, lg in inp.test_logits.items()}
    write_bytes_atomic(path, save(state))


def _add_keys(models: dict[str, dict[str, Any]], explain: dict[str, Any]) -> None:
    from kdlens.explain import metrics_keys

    for name, keys in metrics_keys(explain).items():
        if name in models:
            models[name].update(keys)


def report_stage(ctx) -> None:
    """The last stage of ``kdlens run``: explanations into ctx.metrics, then the report."""
    if not ctx.config.explain.enabled:
        return
    from kdlens.explain import from_context
    from kdlens.pipeline import metrics_document

    start = time.perf_counter()
    explain = _explain_and_save(ctx.out_dir, from_context(ctx))
    _add_keys(ctx.metrics["models"], explain)
    ctx.timings["explain"] = time.perf_counter() - start
    start = time.perf_counter()
    render_report(ctx.out_dir, explain, metrics_document(ctx))
    ctx.timings["report"] = time.perf_counter() - start


def report_run(
    run_dir: str | Path, overrides: list[str] | None = None, compute: bool = True
) -> Path:
    """``kdlens report RUN_DIR``: (re)compute explain.json, add its keys to metrics.json, render.

    With ``compute=False`` only the figures and the page are redrawn from the saved JSON.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise KdlensError(f"run folder {run} does not exist")
    if compute:
        from kdlens.explain import from_run_dir

        start = time.perf_counter()
        explain = _explain_and_save(run, from_run_dir(run, overrides))
        metrics = read_json(run / "metrics.json")
        _add_keys(metrics["models"], explain)
        metrics.setdefault("timings", {})["explain"] = time.perf_counter() - start
        write_json(run / "metrics.json", metrics)
    else:
        if not (run / EXPLAIN_FILE).is_file():
            raise KdlensError(f"{run / EXPLAIN_FILE} not found; run `kdlens report {run}` first")
        try:
            explain = read_json(run / EXPLAIN_FILE)
            metrics = read_json(run / "metrics.json")
        except (json.JSONDecodeError, OSError) as e:
            raise KdlensError(f"cannot read saved results in {run}: {e}") from None
    return render_report(run, explain, metrics)
