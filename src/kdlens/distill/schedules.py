"""Schedules over training: move a weight (alpha, T) from its configured value to ``end``."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "linear", "cosine")


def schedule_value(kind: str, start: float, end: float | None, progress: float) -> float:
    """The value at ``progress`` in [0, 1] (0: first epoch, 1: last) of a schedule start -> end."""
    if kind == "constant" or end is None:
        return start
    p = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        return start + (end - start) * p
    if kind == "cosine":  # slow at both ends, like the cosine learning-rate schedule
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * p))
    raise ValueError(f"unknown schedule {kind!r} (known: {', '.join(SCHEDULES)})")
