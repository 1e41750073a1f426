"""Several seeds of one config, summarized: every metric across seeds and a verdict across seeds.

Input: what each seed's run folder saved (its metrics.json, the dataset indices of its test split,
the test labels and every model's test logits); output: the JSON of a multi-seed ``summary.json``.
Seeds do not get independent test sets (a drawn split redraws its test set from the same pool, a
fixed test set is shared), so the verdict across seeds pairs examples by dataset index
(:func:`kdlens.evaluate.verdicts.net_wins`) rather than pooling McNemar's counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import kdlens
from kdlens.evaluate.verdicts import across_seeds, mean_interval, net_wins, verdict_across_seeds

RECORD_FIELDS = ("role", "family", "trained_with", "derived_from", "twin")


@dataclass
class SeedRun:
    """One finished seed: its seed, folder (relative to the multi-seed folder), metrics.json, and
    for its test split the dataset indices, labels and each model's logits."""

    seed: int
    folder: str
    metrics: dict[str, Any]
    test_ids: np.ndarray | None = None
    y: torch.Tensor | None = None
    logits: dict[str, torch.Tensor] = field(default_factory=dict)
    report: str | None = None  # its report.html, relative to the multi-seed folder


def summarize_seeds(runs: Sequence[SeedRun]) -> dict[str, Any]:
    """The multi-seed summary: mean, std and 95 % t-interval of every number, the verdicts."""
    if not runs:
        raise ValueError("no seeds to summarize")
    metrics = [r.metrics for r in runs]
    first = metrics[0]
    numbers = [
        {
            k: v
            for k, v in m.get("summary", {}).items()
            if k not in ("verdicts", "gap_closed", "bootstrap")
        }
        for m in metrics
    ]
    return {
        "kdlens_version": kdlens.__version__,
        "seeds": [r.seed for r in runs],
        "runs": [{"seed": r.seed, "dir": r.folder, "report": r.report} for r in runs],
        "dataset": first.get("dataset", {}),
        "records": {
            n: {k: m.get(k) for k in RECORD_FIELDS} for n, m in first.get("models", {}).items()
        },
        "models": across_seeds([m.get("models", {}) for m in metrics]),
        "summary": across_seeds(numbers),
        "verdicts": _verdicts(runs),
        "gap_closed": _gap(runs),
        "run_seconds": [m.get("timings", {}).get("total") for m in metrics],
    }


def _verdicts(runs: Sequence[SeedRun]) -> dict[str, Any]:
    names = list(
        dict.fromkeys(n for r in runs for n in r.metrics.get("summary", {}).get("verdicts", {}))
    )
    out = {}
    for name in names:
        have = [r for r in runs if name in r.metrics["summary"]["verdicts"]]
        per_seed = [r.metrics["summary"]["verdicts"][name] for r in have]
        twin = per_seed[0]["vs"]
        wins = None
        if all(r.test_ids is not None and name in r.logits and twin in r.logits for r in have):
            wins = net_wins(
                [r.test_ids for r in have],
                [r.y for r in have],
                [r.logits[name] for r in have],
                [r.logits[twin] for r in have],
            )
        out[name] = {
            "vs": twin,
            "across_seeds": verdict_across_seeds(per_seed, wins),
            "example_wins": wins,
            "per_seed": [{"seed": r.seed, **v} for r, v in zip(have, per_seed, strict=True)],
        }
    return out


def _gap(runs: Sequence[SeedRun]) -> dict[str, Any] | None:
    """The share of the gap closed, over the seeds where the gap was measurable."""
    gaps = [r.metrics.get("summary", {}).get("gap_closed") for r in runs]
    if not any(isinstance(g, dict) for g in gaps):
        return None
    values = [g["value"] for g in gaps if isinstance(g, dict) and g.get("measurable")]
    out: dict[str, Any] = {
        "per_seed": [g.get("value") if isinstance(g, dict) else None for g in gaps],
        "measurable_seeds": len(values),
        "seeds": len(runs),
    }
    if values:
        out.update(mean_interval(values))
    return out
