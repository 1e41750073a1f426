"""Figures drawn from the saved deploy results (``compression_table.json``, ``pruning.json``)."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

STAGE_STYLE = {
    "teacher": ("tab:red", "s"),
    "student": ("tab:blue", "o"),
    "pruned": ("tab:green", "^"),
    "int8": ("tab:purple", "D"),
}


def accuracy_vs_size(table: dict[str, Any]) -> Figure:
    """Test accuracy against bytes on disk, one point per model, coloured by stage."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for stage, (color, marker) in STAGE_STYLE.items():
        rows = [r for r in table["rows"] if r["stage"] == stage and r.get("size_bytes")]
        if not rows:
            continue
        ax.scatter(
            [r["size_bytes"] / 1e6 for r in rows],
            [100 * r["accuracy"] for r in rows],
            c=color,
            marker=marker,
            label=stage,
            zorder=3,
        )
        for r in rows:
            ax.annotate(
                r["name"],
                (r["size_bytes"] / 1e6, 100 * r["accuracy"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    _label_log_axis(ax.xaxis, *ax.get_xlim())
    ax.set_xlabel("size on disk (MB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _label_log_axis(axis, lo: float, hi: float) -> None:
    """Plain numbers on a log axis, and minor-tick labels only where they have room: every one
    within 0.6 decades, 2 and 5 within two, none beyond (every one always ran together, as in
    "0.60.70.80.91")."""
    decades = math.log10(hi / lo) if lo > 0 else math.inf
    keep = set(range(1, 10)) if decades <= 0.6 else {2, 5} if decades <= 2 else set()

    def minor(v: float, _) -> str:
        return f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in keep else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def pruning_curves(rows: list[dict[str, Any]]) -> Figure:
    """Accuracy and fidelity against sparsity: KD fine-tune, hard-label fine-tune, no fine-tune."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    styles = {
        "kd": ("tab:green", "-", "KD fine-tune"),
        "hard": ("tab:orange", "--", "hard-label fine-tune"),
        "none": ("tab:gray", ":", "no fine-tune"),
    }
    for ax, metric in zip(axes, ("accuracy", "fidelity"), strict=True):
        for structure in sorted({r["structure"] for r in rows}):
            part = sorted(
                (r for r in rows if r["structure"] == structure), key=lambda r: r["target_sparsity"]
            )
            xs = [0.0] + [100 * r["achieved_sparsity"] for r in part]
            for key, (color, line, label) in styles.items():
                ys = [100 * part[0]["unpruned"][metric]] + [100 * r[key][metric] for r in part]
                marker = "o" if structure == "unstructured" else "s"
                ax.plot(
                    xs,
                    ys,
                    color=color,
                    linestyle=line,
                    marker=marker,
                    label=f"{label} ({structure})",
                )
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(f"test {metric} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Pruning the distilled student")
    fig.tight_layout()
    return fig


def save_plots(folder, table: dict[str, Any], pruning: list[dict[str, Any]] | None) -> None:
    """Draw the saved deploy results into the run ``folder`` (a ``RunFolder``): the deploy stage
    after saving them, ``kdlens report`` again from the files."""
    accuracy_vs_size(table).savefig(folder.compression_plot, dpi=120, bbox_inches="tight")
    if pruning:
        pruning_curves(pruning).savefig(folder.pruning_plot, dpi=120, bbox_inches="tight")
    plt.close("all")
