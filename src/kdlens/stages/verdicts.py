"""Stage 7: a verdict for every model that has a twin (its record's ``twin``), on the test split.

Runs after every stage that adds models (evaluate, readable, deploy), so the distilled student
against scratch, each readable ``_kd`` against its ``_scratch`` and each deployed model against
its source are judged in one place, with one set of bootstrap resamples shared by all of them.
Writes ``summary.verdicts.<model>`` and ``summary.gap_closed`` to metrics.json, and every model's
test logits to ``test_logits.safetensors`` (what verdicts across seeds pair examples with).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from kdlens.evaluate.verdicts import Resampler, compare, gap_closed
from kdlens.run import ModelRecord, RunContext, select

NAME = "verdicts"
MAIN_ONLY = True
RESAMPLES = 10_000  # bootstrap resamples of the test split, shared by every verdict of a run


def run(ctx: RunContext) -> None:
    if not ctx.test_logits:
        return  # nothing was evaluated (a run of the first stages only)
    start = time.perf_counter()
    y = ctx.dataset.y[ctx.indices("test")]  # the labels only: streaming inputs stay unread
    resampler = Resampler(len(y), RESAMPLES, ctx.config.seed)
    summary = ctx.metrics.setdefault("summary", {})
    summary.update(run_verdicts(ctx.records, ctx.test_logits, y, resampler))
    summary["bootstrap"] = {"resamples": RESAMPLES, "seed": ctx.config.seed}
    save_test_logits(ctx)
    ctx.timings["verdicts"] = time.perf_counter() - start


def run_verdicts(
    records: dict[str, ModelRecord],
    test_logits: dict[str, torch.Tensor],
    y: torch.Tensor,
    resampler: Resampler,
) -> dict[str, Any]:
    """``{"verdicts": {model: {"vs": twin, ...compare()}}, "gap_closed": gap_closed() or None}``.

    Models are paired by their records' ``twin`` field, never by their names; a model or twin
    without test logits (a stage that did not run) has no verdict.
    """
    verdicts = {}
    for name, record in records.items():
        twin = record.twin
        if twin is None or name not in test_logits or twin not in test_logits:
            continue
        comparison = compare(y, test_logits[name], test_logits[twin], resampler=resampler)
        verdicts[name] = {"vs": twin, **comparison}
    return {"verdicts": verdicts, "gap_closed": _gap(records, test_logits, y, resampler)}


def _gap(records, test_logits, y, resampler) -> dict[str, Any] | None:
    teachers = select(records, role="teacher")
    distilled = select(records, role="student", trained_with="teacher")
    if not teachers or not distilled:
        return None
    teacher, kd = teachers[0], distilled[0]
    scratch = records[kd].twin
    if any(m not in test_logits for m in (teacher, kd, scratch)):
        return None
    out = gap_closed(
        y, test_logits[teacher], test_logits[scratch], test_logits[kd], resampler=resampler
    )
    return {"teacher_model": teacher, "scratch_model": scratch, "kd_model": kd, **out}


def save_test_logits(ctx: RunContext) -> None:
    from safetensors.torch import save

    state = {n: lg.float().cpu().contiguous() for n, lg in ctx.test_logits.items()}
    ctx.folder.write_bytes(ctx.folder.test_logits, save(state))
