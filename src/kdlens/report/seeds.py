"""The page of a multi-seed folder: the summary across seeds first, then a link to each seed's report.

Drawn only from ``summary.json``; every piece of text from the run goes through ``html.escape``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from kdlens.evaluate.verdicts import format_p
from kdlens.report.html import CSS, how, table
from kdlens.report.words import seeds_lines

METRICS = [("accuracy", "accuracy"), ("fidelity", "fidelity"), ("ece", "ECE"), ("nll", "NLL")]


def _spread(s: dict[str, Any] | None, scale: float = 1.0, digits: int = 4) -> str:
    """'0.9512 ± 0.0040 (0.9413 to 0.9611)': mean ± std (95% t-interval over seeds)."""
    if not s:
        return "–"
    text = f"{scale * s['mean']:.{digits}f}"
    if s.get("std") is not None:
        text += f" ± {scale * s['std']:.{digits}f}"
    if s.get("ci95"):
        lo, hi = s["ci95"]
        text += f" ({scale * lo:.{digits}f} to {scale * hi:.{digits}f})"
    return text


def _points(v: dict[str, Any]) -> str:
    text = f"{100 * v['accuracy_difference']:+.1f}"
    if v.get("ci95"):
        lo, hi = v["ci95"]
        text += f" ({100 * lo:+.1f} to {100 * hi:+.1f})"
    return text


def render_seeds_html(summary: dict[str, Any], title: str) -> str:
    seeds = summary["seeds"]
    ds = summary.get("dataset", {})
    models = summary.get("models", {})
    verdicts = summary.get("verdicts", {})
    lines = "".join(f"<li>{escape(line)}</li>" for line in seeds_lines(summary))
    per_seed = [
        [
            name,
            v["vs"],
            str(s["seed"]),
            _points(s),
            format_p(s["p_value"]).removeprefix("p = ").removeprefix("p "),
            s["conclusion"],
        ]
        for name, v in verdicts.items()
        for s in v["per_seed"]
    ]
    links = "".join(
        f"<li>seed {r['seed']}: <a href='{escape(r['report'])}'>{escape(r['report'])}</a></li>"
        if r.get("report")
        else f"<li>seed {r['seed']}: {escape(r['dir'])}/ (no report: explain.enabled is false)</li>"
        for r in summary.get("runs", [])
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='muted'>dataset {escape(str(ds.get('name', '?')))}: {ds.get('n_test', '?')} "
        f"test examples per seed; seeds {escape(', '.join(str(s) for s in seeds))}; "
        f"kdlens {escape(str(summary.get('kdlens_version', '?')))}</p>",
        "<h2>Verdicts across seeds</h2>",
        how(
            "Each model with a twin against that twin, over all seeds: the accuracy difference is "
            "the mean over seeds with a 95% t-interval over seeds (it includes the training "
            "noise between seeds); the p-value is an exact sign-flip test on each test example's "
            "net wins over the seeds, which stays valid when seeds share test examples."
        ),
        f"<ul>{lines}</ul>" if lines else "",
        "<h2>Every model across seeds</h2>",
        how("Mean ± standard deviation over seeds (95% t-interval over seeds) on each test split."),
        table(
            ["model"] + [label for _, label in METRICS],
            [[n] + [_spread(m.get(key)) for key, _ in METRICS] for n, m in models.items()],
        ),
        "<h2>Verdicts per seed</h2>",
        how(
            "Each seed's verdict: accuracy difference in points with its paired bootstrap 95% "
            "interval over test examples, and McNemar's exact test."
        ),
        table(["model", "vs", "seed", "difference (95% CI)", "p", "conclusion"], per_seed)
        if per_seed
        else "",
        "<h2>Each seed's report</h2>",
        f"<ul>{links}</ul>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)
