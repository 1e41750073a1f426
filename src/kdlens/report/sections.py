"""Report sections drawn by other stages: each reads the JSON and PNG files its stage saved."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from kdlens.report.html import how, image, table
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
    """Teacher -> student -> pruned -> int8: what each step costs in accuracy and gains in size."""
    path = run.compression_table
    if not path.is_file():
        return ""
    data: dict[str, Any] = run.read_json(path)
    rows = [[r["name"]] + [r.get(key) for key, _ in COMPRESSION_COLUMNS] for r in data["rows"]]
    return "\n".join(
        [
            "<h2>Deployment: teacher → student → pruned → int8</h2>",
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
MAX_RULES_CHARS = 6000


def readable_section(run: RunFolder, metrics: dict[str, Any]) -> str:
    """Readable students beside their hard-label twins, their pictures, rules and curves."""
    readable = metrics.get("readable")
    if not readable:
        return ""
    names = [n for n, m in metrics["models"].items() if m.get("role") == "readable"]
    rows = [[n] + [metrics["models"][n].get(k) for k, _ in READABLE_COLUMNS] for n in names]
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
    curves = sorted(run.figures.glob("readable_curve_*.png"))
    if curves:
        parts.append(
            how(
                "Fidelity and accuracy against complexity (depth, or L1 strength): how much "
                "readability costs, and whether learning from the teacher's soft targets buys "
                "fidelity at the same size."
            )
        )
        parts += [image(p, p.stem) for p in curves]
    pictures = [
        run.file(f)
        for f in readable.get("figures", [])
        if not Path(f).name.startswith("readable_curve_")
    ]
    if pictures:
        parts.append(
            how(
                "What each readable student computes: a soft tree's node filters (what each split "
                "looks for), its leaves' class distributions and one test example's path; a "
                "decision tree's top levels; a linear model's weights per class."
            )
        )
        parts += [image(p, p.stem) for p in pictures]
    for rules in readable.get("rules", []):
        path = run.file(rules)
        if path.is_file():
            text = path.read_text()[:MAX_RULES_CHARS]
            parts.append(f"<p class='muted'>{escape(rules)}</p><pre>{escape(text)}</pre>")
    return "\n".join(parts)


SECTIONS = [readable_section, deploy_section]


def extra_sections(run: RunFolder, metrics: dict[str, Any]) -> list[str]:
    return [html for section in SECTIONS if (html := section(run, metrics))]
