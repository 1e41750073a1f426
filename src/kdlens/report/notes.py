"""What the report says in words beside a table: reference rows and data-driven sentences."""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np


def agreement_references(at: dict[str, Any]) -> list[list[Any]]:
    """Rows to put under the agreement table: chance, and the input alone (if computed)."""
    rows: list[list[Any]] = [["chance (random ranking)", 0.0, 0.0, float(at["topk"])]]
    base = at.get("input_agreement")
    if base:
        rows.append(
            [
                "the input alone (input − baseline)",
                base["spearman"],
                base["cosine"],
                base["topk_overlap"],
            ]
        )
    return rows


def teacher_faithfulness(fa: dict[str, Any]) -> str:
    """In words, why the teacher's faithfulness numbers differ from the students' (if they do)."""
    t = fa.get("teacher")
    others = [f for n, f in fa.items() if n != "teacher"]
    if not t or not others or t.get("output_change") is None:
        return ""

    def median(key: str) -> float:
        values = [f[key] for f in others if f.get(key) is not None]
        return max(float(np.median(values)), 1e-12) if values else float("nan")

    said = []
    inf, change = (
        t["infidelity"] / median("infidelity"),
        t["output_change"] / median("output_change"),
    )
    if inf > 2 and change > 2:
        said.append(
            f"The teacher's infidelity is {inf:.0f}× the students' median, and its logits move "
            f"{change:.0f}× more under the same noise: that reaction accounts for most of it "
            f"(infidelity ÷ output change: teacher {t['relative_infidelity']:.2f}, students "
            f"{median('relative_infidelity'):.2f} in the median)."
        )
    if t["deletion_auc"] > 1.5 * median("deletion_auc"):
        said.append(
            f"The teacher keeps its answer on {100 * t['kept_without_positive']:.0f}% of the "
            f"examples once its positively attributed features ({100 * t['positive_share']:.0f}% "
            f"of them) are removed, the students on {100 * median('kept_without_positive'):.0f}% "
            f"in the median: that, more than a slower fall, is what its higher deletion AUC "
            f"measures."
        )
    return f"<p>{escape(' '.join(said))}</p>" if said else ""


def input_note(at: dict[str, Any]) -> str:
    """Which models agree with the teacher better than the input alone does, in words."""
    base = at.get("input_agreement")
    if not base or not at["agreement"]:
        return ""
    names = {"spearman": "Spearman", "cosine": "cosine", "topk_overlap": "top-k overlap"}
    parts = []
    for key, label in names.items():
        if base[key] is None:
            continue
        above = [n for n, a in at["agreement"].items() if a[key] is not None and a[key] > base[key]]
        parts.append(f"{label}: {', '.join(above) if above else 'none'}")
    return f"<p>Models that beat the input alone ({escape('; '.join(parts))}).</p>"
