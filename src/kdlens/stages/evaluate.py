"""Stage 3: every model on the test split: accuracy, NLL, ECE, and fidelity and KL to the teacher."""

from __future__ import annotations

import time
from typing import Any

from kdlens.distill import compute_logits
from kdlens.evaluate import classification_metrics
from kdlens.models import count_parameters
from kdlens.run import ModelRecord, RunContext, select

NAME = "evaluate"
MAIN_ONLY = False  # cheap, and later stages in every process read its test logits


def run(ctx: RunContext) -> None:
    start = time.perf_counter()
    loader = ctx.eval_loader("test")
    for name, model in ctx.models.items():
        ctx.test_logits[name] = compute_logits(model, loader)
    teacher_logits = ctx.test_logits["teacher"]
    models: dict[str, dict[str, Any]] = {}
    for name, logits in ctx.test_logits.items():
        m = classification_metrics(logits, loader.y, None if name == "teacher" else teacher_logits)
        m["params"] = count_parameters(ctx.models[name])
        result = ctx.train_results.get(name)
        m["train_seconds"] = result.seconds if result else 0.0
        m["best_epoch"] = result.best_epoch if result else 0
        models[name] = m
    if ctx.loaded_teacher:  # its validation accuracy as loaded, and what it was fed
        models["teacher"].update(ctx.loaded_teacher)
    ctx.metrics["models"] = models
    ctx.metrics.setdefault("summary", {}).update(summarize(models, ctx.records))
    ctx.timings["evaluate"] = time.perf_counter() - start


def summarize(models: dict[str, dict[str, Any]], records: dict[str, ModelRecord]) -> dict[str, Any]:
    """The distilled student's accuracy minus its hard-label twin's. How much of the
    teacher-scratch gap it closed, with its interval, is the verdicts stage's ``gap_closed``."""
    kd = select(records, role="student", trained_with="teacher")
    if not kd or records[kd[0]].twin not in models:
        return {}
    return {"kd_minus_scratch": models[kd[0]]["accuracy"] - models[records[kd[0]].twin]["accuracy"]}
