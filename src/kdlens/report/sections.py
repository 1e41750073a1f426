"""Report sections drawn by other stages: each reads the JSON and PNG files its stage saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdlens.report.html import how, image, table
from kdlens.utils import read_json

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


def deploy_section(figures: Path) -> str:
    """Teacher -> student -> pruned -> int8: what each step costs in accuracy and gains in size."""
    path = figures / "compression_table.json"
    if not path.is_file():
        return ""
    data: dict[str, Any] = read_json(path)
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
            image(figures / "compression_accuracy_vs_size.png", "accuracy against size"),
            image(figures / "pruning_accuracy_vs_sparsity.png", "accuracy against sparsity"),
        ]
    )


SECTIONS = [deploy_section]


def extra_sections(figures: Path) -> list[str]:
    return [html for section in SECTIONS if (html := section(figures))]
