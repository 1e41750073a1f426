"""Report sections drawn by other stages: each reads the JSON and PNG files its stage saved."""

from __future__ import annotations

from html import escape
from typing import Any

from kdlens.report.html import how, image, table
from kdlens.report.order import reading_order
from kdlens.run import RunFolder

COMPRESSION_COLUMNS = [
    ("stage", "stage"),
    ("accuracy", "accuracy"),
    ("fidelity", "fidelity"),
    ("nonzero_params", "non-zero params"),
    ("size_bytes", "bytes"),
    ("flops", "FLOPs / example"),
    ("latency_ms_b1", "latency b1 (ms)"),
    ("throughput_b256", "examples/s at b256"),
    ("size_vs_teacher", "size / teacher"),
]


def deploy_section(run: RunFolder, metrics: dict[str, Any]) -> str:
    """Teacher -> student -> pruned -> int8 (the steps the run took): what each step costs in
    accuracy and gains in size."""
    path = run.compression_table
    if not path.is_file():
        return ""
    data: dict[str, Any] = run.read_json(path)
    order = {n: i for i, n in enumerate(reading_order(metrics.get("models", {})))}
    ordered_rows = sorted(data["rows"], key=lambda r: order.get(r["name"], len(order)))
    rows = [[r["name"]] + [r.get(key) for key, _ in COMPRESSION_COLUMNS] for r in ordered_rows]
    steps = " → ".join(dict.fromkeys(str(r["stage"]) for r in data["rows"]))  # only steps taken
    return "\n".join(
        [
            f"<h2>Deployment: {escape(steps)}</h2>",
            how(
                "Each row is one model as it would ship: accuracy and fidelity on the test split "
                "against bytes on disk, FLOPs per example and CPU latency, so each compression step "
                "shows what it costs and what it saves."
            ),
            table(["model"] + [label for _, label in COMPRESSION_COLUMNS], rows),
            image(run.compression_plot, "accuracy against size"),
            image(run.pruning_plot, "accuracy against sparsity"),
        ]
    )


READABLE_COLUMNS = [
    ("accuracy", "accuracy"),
    ("fidelity", "fidelity"),
    ("path_accuracy", "accuracy (one path)"),
    ("path_fidelity", "fidelity (one path)"),
    ("params", "parameters"),
]
MAX_RULES_LINES = 80
RULES_DEPTH = 4  # in the page; the rules file has more (readable.figures.RULES_DEPTH)


def readable_section(run: RunFolder, metrics: dict[str, Any]) -> str:
    """Readable students beside their hard-label twins, their pictures, rules and curves, all
    from ``readable/readable.json`` and the figures drawn from it."""
    from kdlens.readable.figures import how_trained, ordered, planned_figures, tree_rules

    models = metrics.get("models", {})
    names = [n for n in reading_order(models) if models[n].get("role") == "readable"]
    if not names:
        return ""
    rows = [[n] + [models[n].get(k) for k, _ in READABLE_COLUMNS] for n in names]
    parts = [
        "<h2>Readable students</h2>",
        how(
            "Students a person can follow, each distilled from the teacher (_kd) and trained on "
            "hard labels (_scratch): fidelity is how often it decides like the teacher; a soft "
            "tree's one-path columns use only the single most probable root-to-leaf path, which "
            "is the explanation it gives."
        ),
        table(["model"] + [label for _, label in READABLE_COLUMNS], rows),
    ]
    if not run.readable_results.is_file():  # a run from before kdlens saved it
        parts.append(
            f"<p class='muted'>No {escape(run.relative(run.readable_results))}: "
            "no figures of the readable students.</p>"
        )
        return "\n".join(parts)
    doc = run.read_json(run.readable_results)
    planned = planned_figures(doc)
    curves = [p for p in planned if p.model is None]
    if curves:
        parts.append(
            how(
                "Fidelity and accuracy against complexity (depth, or L1 strength): how much "
                "readability costs, and whether learning from the teacher's soft targets buys "
                "fidelity at the same size."
            )
        )
        parts += [image(run.figure(p.stem), p.stem) for p in curves]
    shown = [
        n for n in ordered(doc) if any(p.model == n for p in planned) or "tree" in doc["models"][n]
    ]
    if shown:
        parts.append(
            how(
                "What each readable student computes: a soft tree's node filters (what each split "
                "looks for), its leaves' class distributions and one test example's path; a "
                "decision tree's top levels and its rules (thresholds in the input's own units); "
                "a linear model's weights per class."
            )
        )
    for name in shown:
        entry = doc["models"][name]
        parts.append(f"<h3>{escape(name)}: {escape(how_trained(entry))}</h3>")
        parts += [image(run.figure(p.stem), p.stem) for p in planned if p.model == name]
        if "tree" in entry:
            parts.append(
                _rules_block(
                    tree_rules(entry, doc["dataset"], RULES_DEPTH), run.relative(run.rules(name))
                )
            )
    return "\n".join(parts)


def _rules_block(text: str, file: str) -> str:
    """The rules of the first RULES_DEPTH levels, at most MAX_RULES_LINES whole lines of them,
    and where the deeper ones are."""
    lines = text.splitlines()
    note = f"the rules of the first {RULES_DEPTH} levels; deeper ones in {file}"
    if len(lines) > MAX_RULES_LINES:
        note = f"the first {MAX_RULES_LINES} of {len(lines)} lines; {note}"
        lines = lines[:MAX_RULES_LINES] + ["..."]
    return f"<p class='muted'>{escape(note)}</p><pre>{escape(chr(10).join(lines))}</pre>"


SECTIONS = [readable_section, deploy_section]


def extra_sections(run: RunFolder, metrics: dict[str, Any]) -> list[str]:
    return [html for section in SECTIONS if (html := section(run, metrics))]
