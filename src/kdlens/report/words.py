"""A run's verdicts in words, from its saved ``metrics.json`` (or a multi-seed ``summary.json``).

The CLI prints these lines and the report shows them; both read the same saved numbers.
"""

from __future__ import annotations

from typing import Any

from kdlens.evaluate.verdicts import describe, describe_gap


def _is_distilled_student(model: dict[str, Any]) -> bool:
    return model.get("role") == "student" and model.get("trained_with") == "teacher"


def _label(name: str, model: dict[str, Any]) -> str:
    # The core pair reads as the experiment it is; every other pair names both models.
    return "distillation" if _is_distilled_student(model) else name


def _ece(models: dict[str, Any], a: str, b: str, key: str = "ece") -> tuple[float, float] | None:
    ea, eb = models.get(a, {}).get(key), models.get(b, {}).get(key)
    if isinstance(ea, dict):  # a summary across seeds: its mean
        ea, eb = ea.get("mean"), (eb or {}).get("mean")
    return (ea, eb) if isinstance(ea, float) and isinstance(eb, float) else None


def verdict_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per model with a twin, then the teacher-scratch gap line (metrics.json)."""
    summary = metrics.get("summary", {})
    models = metrics.get("models", {})
    lines = []
    for name, verdict in summary.get("verdicts", {}).items():
        twin = verdict["vs"]
        lines.append(
            describe(
                verdict,
                name=_label(name, models.get(name, {})),
                twin=twin,
                ece=_ece(models, name, twin),
            )
        )
    gap = summary.get("gap_closed")
    if isinstance(gap, dict):
        lines.append(gap_line(gap))
    return lines


def gap_line(gap: dict[str, Any]) -> str:
    return describe_gap(
        gap,
        teacher=gap.get("teacher_model", "teacher"),
        twin=gap.get("scratch_model", "scratch"),
    )


def _times(ratio: float | None, better: str, worse: str) -> str | None:
    if not ratio:
        return None
    r, word = (ratio, better) if ratio >= 1 else (1 / ratio, worse)
    return f"{r:.0f}x {word}" if r >= 10 else f"{r:.1f}x {word}"


def size_line(metrics: dict[str, Any]) -> str | None:
    """'student (kd) vs teacher: 4.2x fewer parameters, 59x fewer FLOPs, 3.4x faster at batch 1'."""
    ratios = metrics.get("summary", {}).get("teacher_vs_student")
    if not ratios:
        return None
    parts = [
        _times(ratios.get("params"), "fewer parameters", "more parameters"),
        _times(ratios.get("flops"), "fewer FLOPs", "more FLOPs"),
        _times(ratios.get("latency_b1"), "faster at batch 1", "slower at batch 1"),
    ]
    parts = [p for p in parts if p]
    if not parts:
        return None
    students = [n for n, m in metrics.get("models", {}).items() if _is_distilled_student(m)]
    who = f"student ({students[0]})" if students else "student"
    return f"{who} vs teacher: " + ", ".join(parts)


def seeds_lines(summary: dict[str, Any]) -> list[str]:
    """The verdicts across seeds of a multi-seed run (its summary.json), then the gap line."""
    models = summary.get("models", {})
    seeds = len(summary.get("seeds", []))
    lines = []
    for name, verdict in summary.get("verdicts", {}).items():
        across = verdict["across_seeds"]
        lines.append(
            describe(
                across,
                name=_label(name, summary.get("records", {}).get(name, {})),
                twin=verdict["vs"],
                seeds=across.get("seeds", seeds),
                ece=_ece(models, name, verdict["vs"]),
            )
        )
    gap = summary.get("gap_closed")
    if gap:
        lines.append(seeds_gap_line(gap, seeds))
    return lines


def seeds_gap_line(gap: dict[str, Any], seeds: int) -> str:
    measurable = gap["measurable_seeds"]
    if not measurable:
        return f"the teacher-scratch gap is too small to measure on every one of the {seeds} seeds"
    text = f"distillation closed {gap['mean']:.0%} of the teacher-scratch gap"
    if gap.get("ci95"):
        lo, hi = gap["ci95"]
        text += f" (mean of {gap['n']} seeds, 95% CI over seeds {lo:.0%} to {hi:.0%}"
    else:
        text += f" ({gap['n']} seed"
    return text + f"; measurable on {measurable} of {seeds} seeds)"
