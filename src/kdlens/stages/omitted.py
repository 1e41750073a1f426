"""Stage 5: the omitted-class experiment (Hinton et al. 2015, section 3), when
``distill.exclude_classes`` is set: recall of the classes the students never saw, before and after
raising their bias (the shift chosen on the validation split)."""

from __future__ import annotations

from typing import Any

from kdlens.distill import compute_logits
from kdlens.evaluate.metrics import accuracy
from kdlens.evaluate.omitted import class_recall, omitted_class_report
from kdlens.run import RunContext, select

NAME = "omitted"
MAIN_ONLY = True


def run(ctx: RunContext) -> None:
    """Adds ``omitted_classes`` to metrics.json when ``distill.exclude_classes`` is set."""
    classes = list(ctx.config.distill.exclude_classes)
    if not classes:
        return
    val_loader, test_loader = ctx.eval_loader("val"), ctx.eval_loader("test")
    report: dict[str, Any] = {"classes": classes, "models": {}}
    if "teacher" in ctx.test_logits:  # a reference: the teacher did see the omitted classes
        logits = ctx.test_logits["teacher"]
        report["models"]["teacher"] = {
            "omitted_recall": class_recall(logits, test_loader.y, classes),
            "accuracy": accuracy(logits, test_loader.y),
        }
    for name in select(ctx.records, role="student"):
        val_logits = compute_logits(ctx.models[name], val_loader)
        report["models"][name] = omitted_class_report(
            ctx.test_logits[name], test_loader.y, val_logits, val_loader.y, classes
        )
    ctx.metrics["omitted_classes"] = report
