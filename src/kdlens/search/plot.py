"""Sweep figures, drawn from a saved sweep.json document (compute -> JSON -> render)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any


def plot_sweep(document: dict[str, Any]):
    """Accuracy and fidelity (mean ± std over seeds) against each swept key.

    One row per key; each line fixes the other keys' values. Returns a matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid: dict[str, list] = document["grid"]
    keys = list(grid)
    fig, axes = plt.subplots(len(keys), 2, figsize=(10, 3.2 * len(keys)), squeeze=False)
    for row, key in enumerate(keys):
        others = [k for k in keys if k != key]
        xs = list(range(len(grid[key])))
        for fixed in itertools.product(*(grid[k] for k in others)):
            fixed_cell = dict(zip(others, fixed, strict=True))
            chosen = [
                next(c for c in document["cells"] if c["cell"] == {**fixed_cell, key: v})
                for v in grid[key]
            ]
            label = ", ".join(f"{k}={v}" for k, v in fixed_cell.items()) or "distilled"
            for col, metric in enumerate(("accuracy", "fidelity")):
                means = [c.get("kd", {}).get(metric, {}).get("mean") for c in chosen]
                stds = [c.get("kd", {}).get(metric, {}).get("std") for c in chosen]
                if any(m is None for m in means):
                    continue
                axes[row][col].errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
        for col, metric in enumerate(("accuracy", "fidelity")):
            ax = axes[row][col]
            ax.set_xticks(xs, [str(v) for v in grid[key]])
            ax.set_xlabel(key)
            ax.set_ylabel(f"student {metric} (test)")
            ax.grid(alpha=0.3)
        if others:
            axes[row][0].legend(fontsize=7)
    fig.suptitle(f"sweep over {len(document['seeds'])} seed(s): mean ± std")
    fig.tight_layout()
    return fig


def save_sweep_plot(document: dict[str, Any], path: str | Path) -> None:
    import matplotlib.pyplot as plt

    fig = plot_sweep(document)
    fig.savefig(path, dpi=120)
    plt.close(fig)
