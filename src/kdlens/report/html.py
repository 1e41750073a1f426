"""One self-contained HTML page: inline CSS, images as base64 data URIs, no scripts, no fonts.

Every piece of text that comes from the run (model and class names, config values) goes through
:func:`html.escape`.
"""

from __future__ import annotations

import base64
import re
from html import escape, unescape
from pathlib import Path
from typing import Any

import numpy as np

from kdlens.report.notes import agreement_references, input_note, teacher_faithfulness
from kdlens.report.order import ordered_items, summary_rows

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
p.how{background:#f6f8fa;border-left:4px solid #4a7;padding:.5em .8em}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
.muted{color:#777;font-size:.85em}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:.8em}
nav.contents{background:#f6f8fa;padding:.4em 1em;display:inline-block}
nav.contents ol{margin:.2em 0;padding-left:1.4em}
"""

SUMMARY_COLUMNS = [
    ("accuracy", "accuracy"),
    ("fidelity", "fidelity"),
    ("kl_to_teacher", "KL to teacher"),
    ("ece", "ECE"),
    ("params", "params"),
    ("train_seconds", "train s"),
    ("dark_knowledge_distance", "dark-knowledge distance"),
    ("attribution_agreement.spearman", "attr. Spearman"),
    ("attribution_agreement.topk_overlap", "attr. top-k overlap"),
    ("deletion_auc", "deletion AUC"),
]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value and abs(value) < 1e-3:  # e.g. an infidelity of 3e-5: four decimals would say 0
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return escape(str(value))


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def table(header: list[str], rows: list[list[Any]]) -> str:
    """Header cells and the first cell of each row are text; other cells are formatted values."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr><td>"
        + escape(str(r[0]))
        + "</td>"
        + "".join(f"<td>{_fmt(v)}</td>" for v in r[1:])
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def image(path: Path | None, alt: str) -> str:
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def how(text: str) -> str:
    return f'<p class="how">{escape(text)}</p>'


def render_html(
    metrics: dict[str, Any],
    explain: dict[str, Any],
    figures: dict[str, Path],
    title: str,
    extra: list[str] | None = None,
) -> str:
    """The page; ``extra`` holds ready HTML sections from other stages, placed before timings."""
    models = metrics.get("models", {})
    dk, at, fa, dis = (
        explain["dark_knowledge"],
        explain["attributions"],
        explain["faithfulness"],
        explain["disagreements"],
    )
    t = explain["temperature"]
    fig = figures.get
    ds = metrics.get("dataset", {})
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='muted'>dataset {escape(str(ds.get('name', '?')))}: "
        f"{_fmt(ds.get('n_train'))} train / {_fmt(ds.get('n_val'))} val / {_fmt(ds.get('n_test'))} "
        f"test examples, {_fmt(ds.get('num_classes'))} classes; distillation temperature {t:g}; "
        f"kdlens {escape(str(metrics.get('kdlens_version', '?')))}</p>",
        _notes(metrics),
        "<h2>Summary</h2>",
        how(
            "One row per model on the test split: fidelity and KL compare a model with the teacher, "
            "a smaller dark-knowledge distance and higher attribution agreement mean a student took "
            "more of the teacher's soft targets and evidence, and a lower deletion AUC means the "
            "model's own attributions are more faithful."
        ),
        summary_table(models, metrics.get("summary", {}).get("verdicts", {})),
        _verdict_paragraph(metrics),
        "<h2>Dark knowledge: the teacher's soft targets</h2>",
        how(
            "Row j shows how the teacher spreads probability over classes for test examples of "
            "class j; bright off-diagonal cells are classes the teacher finds alike, which is "
            "what a distilled student can learn and a student trained on hard labels cannot."
        ),
        image(fig("similarity_t1"), "teacher class similarity at T=1"),
        _similar_pairs(explain),
        image(fig("similarity_tdistill"), f"teacher class similarity at T={t}"),
        how(
            "The same matrix for every model at T = 1 (classes in the teacher's order); the "
            "distance is " + dk["distance_definition"] + ", so 0 means the same dark knowledge."
        ),
        image(fig("similarity_models"), "class similarity per model"),
        table(
            ["model", "distance at T=1", f"distance at T={t:g}"],
            [[n, d.get("1"), d.get("distill")] for n, d in ordered_items(dk["distance"], models)],
        ),
        how(
            "Higher T spreads the soft targets: pick a T where the entropy is well above its T=1 "
            "value but still below the dashed uniform line, or the targets carry no information."
        ),
        image(fig("entropy_vs_t"), "soft-target entropy against temperature"),
        how(
            "Test examples with every model's probabilities at T = 1 on a log scale, so the tiny "
            "wrong-class probabilities (the dark knowledge) are visible next to the top class."
        ),
        image(fig("example_probabilities"), "example probabilities"),
        "<h2>Attributions: what each model looks at</h2>",
        how(
            "Each row is one model's attribution (one row per method) for the class the teacher "
            "predicts, named above each column (IG: red for, blue against; saliency and "
            "Grad-CAM: brighter matters more; each map scaled to its own maximum); similar maps "
            "mean the student decides from the same evidence as the teacher."
        ),
        image(fig("attributions"), "attribution maps"),
        how(
            f"Agreement of each model's Integrated Gradients with the teacher's over "
            f"{at['n_examples']} test examples: Spearman and cosine near 1 mean the same ranking "
            f"and direction, near 0 unrelated; top-{100 * at['topk']:g}% overlap is the share of "
            f"the teacher's most important features the model shares. Two reference rows: a "
            f"random ranking (chance) and the input itself. IG is (input − baseline) × the "
            f"average gradient, so every model's map is zero where the input equals the baseline "
            f"(an image's blank background): maps agree well above chance for that reason alone, "
            f"and a student shares the teacher's evidence only as far as it beats the input row."
        ),
        image(fig("agreement"), "attribution agreement"),
        table(
            ["model", "Spearman", "cosine", "top-k overlap"],
            [
                [n, a["spearman"], a["cosine"], a["topk_overlap"]]
                for n, a in ordered_items(at["agreement"], models)
            ]
            + agreement_references(at),
        ),
        input_note(at),
        _skipped(at["skipped"]),
        "<h2>Faithfulness: do the attributions explain the model?</h2>",
        how(
            "Accuracy falls as the most-attributed input features are removed; a faithful "
            "explanation makes it fall faster than random removal (dotted), so lower deletion AUC "
            "is better. Where most features have no attribution (an image's blank background), "
            "the curve is flat once the positively attributed ones are gone, so the AUC is mostly "
            'the share of examples whose answer survives their removal ("kept"): a model that '
            "keeps it decides from interactions its IG spreads onto features it marks negative. "
            "Lower infidelity means the attributions predict the effect of small noise better; it "
            "is in squared logit units, so a model whose logits react more to the noise "
            '("output change") gets more of it: the last column divides by that reaction '
            "(0: IG predicts all of it, 1: none)."
        ),
        image(fig("deletion"), "deletion curves"),
        table(
            [
                "model",
                "deletion AUC",
                "random-order AUC",
                "positive IG (share of features)",
                "kept without it",
                "infidelity",
                "output change",
                "infidelity ÷ output change",
            ],
            [
                [
                    n,
                    f["deletion_auc"],
                    f["deletion_auc_random"],
                    f.get("positive_share"),
                    f.get("kept_without_positive"),
                    f["infidelity"],
                    f.get("output_change"),
                    f.get("relative_infidelity"),
                ]
                for n, f in ordered_items(fa, models)
            ],
        ),
        teacher_faithfulness(fa),
        "<h2>Disagreements</h2>",
        how(
            "Rows are true classes and columns predictions (colour on a log scale): off-diagonal "
            "cells are mistakes, and a student whose mistakes sit where the teacher's do has "
            "learned the teacher's confusions."
        ),
        image(fig("confusion"), "confusion matrices"),
        table(
            ["student", "test examples where it disagrees with the teacher"],
            [[n, c] for n, c in ordered_items(dis["counts"], models)],
        ),
        _per_class_accuracy(explain),
        _disagreement_block(dis, fig("disagreements")),
        *(extra or []),
        "<h2>Timings</h2>",
        how("Seconds per stage of the run and of these explanations."),
        table(
            ["stage", "seconds"],
            [
                [k, v]
                for k, v in {**metrics.get("timings", {}), **explain.get("timings", {})}.items()
            ],
        ),
        "</body></html>",
    ]
    return with_contents("\n".join(p for p in parts if p))


_H2 = re.compile(r"<h2( [^>]*)?>(.*?)</h2>", re.S)


def with_contents(page: str) -> str:
    """Give every section heading an id and list them, linked, at the top of the page."""
    entries: list[tuple[str, str]] = []

    def anchor(match: re.Match) -> str:
        if match.group(1):  # a heading with attributes of its own is left alone
            return match.group(0)
        words = re.sub(r"[^a-z0-9]+", "-", unescape(match.group(2)).lower()).strip("-")
        slug = words or "section"
        if any(slug == s for s, _ in entries):
            slug = f"{slug}-{len(entries) + 1}"
        entries.append((slug, match.group(2)))
        return f'<h2 id="{slug}">{match.group(2)}</h2>'

    page = _H2.sub(anchor, page)
    if not entries:
        return page
    items = "".join(f'<li><a href="#{slug}">{title}</a></li>' for slug, title in entries)
    nav = f"<nav class='contents' aria-label='contents'><strong>Contents</strong><ol>{items}</ol></nav>"
    first = page.index(f'<h2 id="{entries[0][0]}">')
    return page[:first] + nav + "\n" + page[first:]


VERDICT_COLUMNS = ["vs", "difference (95% CI)", "p", "conclusion"]


def summary_table(models: dict[str, Any], verdicts: dict[str, Any]) -> str:
    """One row per model; models judged against a twin get the verdict columns filled."""
    header = ["model"] + [c[1] for c in SUMMARY_COLUMNS]
    if verdicts:
        header += VERDICT_COLUMNS
    rows = []
    for name, m in summary_rows(models):
        row = [name] + [_get(m, key) for key, _ in SUMMARY_COLUMNS]
        if verdicts:
            row += _verdict_cells(verdicts.get(name))
        rows.append(row)
    return table(header, rows)


def _verdict_cells(v: dict[str, Any] | None) -> list[Any]:
    from kdlens.evaluate.verdicts import format_p

    if v is None:
        return [None] * len(VERDICT_COLUMNS)
    diff = f"{100 * v['accuracy_difference']:+.1f} points"
    if v.get("ci95"):
        lo, hi = v["ci95"]
        diff += f" ({100 * lo:+.1f} to {100 * hi:+.1f})"
    return [
        v["vs"],
        diff,
        format_p(v["p_value"]).removeprefix("p = ").removeprefix("p "),
        v["conclusion"],
    ]


def _verdict_paragraph(metrics: dict[str, Any]) -> str:
    from kdlens.report.words import verdict_lines

    lines = verdict_lines(metrics)
    if not lines:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return (
        how(
            "Each model with a twin (the distilled student's hard-label twin, a readable "
            "student's, a deployed model's source) is judged against it on the same test "
            "examples: the accuracy difference in points with a paired bootstrap 95% interval, "
            "McNemar's exact test on the examples only one of the two gets right, and the "
            "conclusion at the 5% level."
        )
        + f"<ul>{items}</ul>"
    )


def _similar_pairs(explain: dict[str, Any], n: int = 5) -> str:
    """The class pairs the teacher confuses most at T=1, in words."""
    names = explain["dataset"]["class_names"]
    m = np.asarray(explain["dark_knowledge"]["matrices"]["1"]["teacher"], dtype=float)
    s = np.nan_to_num((m + m.T) / 2)
    np.fill_diagonal(s, -1.0)
    iu = np.triu_indices(len(s), 1)
    top = np.argsort(-s[iu], kind="stable")[:n]
    rows = [[f"{names[iu[0][t]]} ↔ {names[iu[1][t]]}", float(s[iu][t])] for t in top]
    return (
        "<p>Classes the teacher finds most alike (mean mutual probability at T = 1):</p>"
        + table(["class pair", "probability"], rows)
    )


def _per_class_accuracy(explain: dict[str, Any]) -> str:
    conf = explain["disagreements"]["confusion"]
    names = explain["dataset"]["class_names"]
    acc = {}
    for model, c in conf.items():
        c = np.asarray(c, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc[model] = np.diag(c) / c.sum(1)
    rows = [
        [name] + [None if np.isnan(acc[m][i]) else float(acc[m][i]) for m in conf]
        for i, name in enumerate(names)
    ]
    return "<p>Accuracy per true class:</p>" + table(["class", *conf], rows)


def _notes(metrics: dict[str, Any]) -> str:
    """A loaded teacher's validation check, and what the run did differently from its config."""
    items = []
    teacher = metrics.get("models", {}).get("teacher", {})
    if teacher.get("loaded_val_accuracy") is not None:
        pre = teacher.get("preprocess") or {}
        fed = f"normalize {pre.get('normalize')}" if pre else "saved outputs"
        if pre.get("resize"):
            fed += f", resize {pre['resize'][0]}x{pre['resize'][1]}"
        items.append(
            f"The teacher was loaded, not trained: validation accuracy "
            f"{_fmt(teacher['loaded_val_accuracy'])} (chance {_fmt(teacher.get('chance'))}), "
            f"fed {fed}."
        )
    items += [str(n) for n in metrics.get("notes", [])]
    if not items:
        return ""
    return "<ul class='muted'>" + "".join(f"<li>{escape(t)}</li>" for t in items) + "</ul>"


def _skipped(skipped: dict[str, str]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li>{escape(n)}: {escape(r)}</li>" for n, r in skipped.items())
    return f"<p class='muted'>No attributions for:</p><ul class='muted'>{items}</ul>"


def _disagreement_block(dis: dict[str, Any], path: Path | None) -> str:
    if not dis["pair"]:
        return ""
    a, b = dis["pair"]
    return how(
        f"Test examples where {a} and {b} predict different classes (most confident teacher "
        f"first), with both models' probabilities."
    ) + image(path, "disagreements")
