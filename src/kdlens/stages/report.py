"""Stage 7 (last): explanations of every model the stages above added, then the report."""

from __future__ import annotations

import time

from kdlens.report.build import add_explain_keys, explain_and_save, render_report
from kdlens.run import RunContext

NAME = "report"
MAIN_ONLY = True


def run(ctx: RunContext) -> None:
    if not ctx.config.explain.enabled:
        return
    from kdlens.explain import from_context

    start = time.perf_counter()
    explain = explain_and_save(ctx.folder, from_context(ctx))
    add_explain_keys(ctx.metrics["models"], explain)
    ctx.timings["explain"] = time.perf_counter() - start
    start = time.perf_counter()
    render_report(ctx.folder, explain, ctx.metrics_document())
    ctx.timings["report"] = time.perf_counter() - start
