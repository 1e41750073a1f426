"""Figures and rules of readable students, drawn from ``readable/readable.json`` alone.

Each function takes one model's entry of that file (or a curve) and the file's ``dataset``
header and returns a matplotlib figure (or text); :func:`save_readable_figures` draws them all.
Models are chosen by their record fields (``family``, ``trained_with``), never by their names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 100
TOP_FEATURES = 8  # tabular: a linear model's weights shown per class
NODE_WEIGHTS = 4  # tabular: a soft-tree node's weights shown
TREE_LEVELS = 3  # decision-tree levels drawn; the rules hold more
RULES_DEPTH = 6


def _text(s: Any) -> str:
    """Matplotlib reads ``$`` as maths mode; names are drawn literally."""
    return str(s).replace("$", r"\$")


def feature_names(dataset: dict[str, Any]) -> list[str]:
    """Pixels by position (``pixel (row, col)``), or the data's feature names."""
    shape = dataset["input_shape"]
    if dataset["kind"] == "image":
        c, h, w = shape
        return [
            f"pixel ({r}, {col})" if c == 1 else f"pixel ({ch}, {r}, {col})"
            for ch in range(c)
            for r in range(h)
            for col in range(w)
        ]
    return dataset.get("feature_names") or [f"x{i}" for i in range(math.prod(shape))]


def how_trained(entry: dict[str, Any]) -> str:
    return (
        "distilled from the teacher"
        if entry.get("trained_with") == "teacher"
        else "trained on hard labels"
    )


def _title(entry: dict[str, Any], what: str) -> str:
    return f"{_text(entry['name'])} ({how_trained(entry)}): {what}"


def threshold_text(t: float) -> str:
    """Four significant digits, never in scientific notation: 0.498, 0.00196, 1235."""
    return np.format_float_positional(t, precision=4, unique=False, fractional=False, trim="-")


def ordered(doc: dict[str, Any]) -> list[str]:
    """Model names by family (in the order families first appear), distilled before hard-label."""
    models = doc["models"]
    families = list(dict.fromkeys(m["family"] for m in models.values()))
    return sorted(
        models,
        key=lambda n: (
            families.index(models[n]["family"]),
            models[n].get("trained_with") != "teacher",
        ),
    )


# -- soft trees ---------------------------------------------------------------------------------


def _draw_filter(ax, values: list, dataset: dict[str, Any], fontsize: float) -> None:
    """A node's filter: an image of its weights (red pushes right), or its largest weights."""
    if dataset["kind"] == "image":
        img = np.asarray(values)
        lim = float(np.abs(img).max()) or 1.0
        ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    w = np.asarray(values)
    names = feature_names(dataset)
    top = np.argsort(-np.abs(w))[:NODE_WEIGHTS]
    text = "\n".join(f"{w[i]:+.2f} {_text(names[i])[:18]}" for i in top)
    ax.text(0.02, 0.5, text, family="monospace", fontsize=fontsize, va="center")
    ax.axis("off")


def soft_tree_nodes_figure(entry: dict[str, Any], dataset: dict[str, Any]) -> Figure:
    """Inner nodes of the first levels in tree layout: filters (images) or top weights."""
    st = entry["soft_tree"]
    levels = st["levels_shown"]
    cols = 2 ** (levels - 1)
    fig = plt.figure(figsize=(max(7, 1.6 * cols), 1.9 * levels + 0.5), dpi=DPI)
    for level in range(levels):
        n = 2**level
        for j in range(n):
            node = n - 1 + j
            span = cols // n
            ax = plt.subplot2grid((levels, cols), (level, j * span), colspan=span, fig=fig)
            _draw_filter(ax, st["filters"][str(node)], dataset, fontsize=7)
            ax.set_title(f"node {node}  β={st['beta'][node]:.2f}", fontsize=8)
    fig.suptitle(_title(entry, "inner nodes (red pushes right)"), fontsize=10)
    fig.tight_layout()
    return fig


def soft_tree_leaves_figure(entry: dict[str, Any], dataset: dict[str, Any]) -> Figure:
    """Every leaf's class distribution as one row of a heat map."""
    probs = np.asarray(entry["soft_tree"]["leaves"])
    classes = [_text(c) for c in dataset["class_names"]]
    fig, ax = plt.subplots(
        figsize=(2.5 + 0.45 * len(classes), 1.5 + min(10, 0.12 * len(probs))), dpi=DPI
    )
    im = ax.imshow(probs, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("class")
    ax.set_ylabel("leaf")
    fig.colorbar(im, ax=ax).set_label("probability", fontsize=8)
    ax.set_title(_title(entry, "leaf class distributions"), fontsize=9)
    fig.tight_layout()
    return fig


def soft_tree_path_figure(entry: dict[str, Any], dataset: dict[str, Any]) -> Figure:
    """One test example's most probable path: each node's filter, its branch and probability."""
    st = entry["soft_tree"]
    path = st["path"]
    steps = path["steps"]
    classes = [_text(c) for c in dataset["class_names"]]
    n = len(steps) + 2
    cols = min(n, 6)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows + 0.4), dpi=DPI)
    axes = np.atleast_1d(axes).ravel()
    if dataset["kind"] == "image":
        axes[0].imshow(np.asarray(path["input"]), cmap="gray_r")
        axes[0].set_xticks([])
        axes[0].set_yticks([])
    else:
        _draw_filter(axes[0], path["input"], dataset, fontsize=6)
    axes[0].set_title(f"example, true class {classes[path['label']]}", fontsize=8)
    for ax, step in zip(axes[1:], steps, strict=False):
        _draw_filter(ax, st["filters"][str(step["node"])], dataset, fontsize=6)
        branch = "right" if step["right"] else "left"
        ax.set_title(f"node {step['node']}: {branch}\np(right) = {step['p_right']:.2f}", fontsize=8)
    ax = axes[len(steps) + 1]
    ax.bar(range(len(classes)), st["leaves"][path["leaf"]])
    ax.set_xticks(range(len(classes)), classes, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(f"leaf {path['leaf']}", fontsize=8)
    for ax in axes[n:]:
        ax.axis("off")
    fig.suptitle(_title(entry, "the most probable path of one test example"), fontsize=10)
    fig.tight_layout()
    return fig


# -- decision trees -----------------------------------------------------------------------------


def tree_rules(entry: dict[str, Any], dataset: dict[str, Any], max_depth: int = RULES_DEPTH) -> str:
    """The tree as nested if/else rules (like ``sklearn.tree.export_text``), thresholds in the
    units the tree was fitted on, each leaf with its class, probability and share of the data."""
    tree = entry["tree"]
    names = feature_names(dataset)
    classes = dataset["class_names"]
    left, right = tree["children_left"], tree["children_right"]
    lines = [
        f"# {entry['name']} ({how_trained(entry)}): depth {tree['depth']}, {tree['leaves']} "
        "leaves; thresholds in the input's own units (before standardisation)"
    ]

    def height(node: int) -> int:
        return 0 if left[node] == -1 else 1 + max(height(left[node]), height(right[node]))

    def walk(node: int, depth: int) -> None:
        indent = "|   " * depth
        if left[node] == -1:
            p = tree["value"][node]
            k = int(np.argmax(p))
            lines.append(
                f"{indent}|--- class {classes[k]} (p = {p[k]:.2f}; "
                f"{100 * tree['share'][node]:.1f}% of training weight)"
            )
            return
        if depth == max_depth:
            lines.append(f"{indent}|--- ... {height(node)} more levels")
            return
        name, t = names[tree["feature"][node]], threshold_text(tree["threshold"][node])
        lines.append(f"{indent}|--- {name} <= {t}")
        walk(left[node], depth + 1)
        lines.append(f"{indent}|--- {name} >  {t}")
        walk(right[node], depth + 1)

    walk(0, 0)
    return "\n".join(lines) + "\n"


def tree_figure(
    entry: dict[str, Any], dataset: dict[str, Any], levels: int = TREE_LEVELS
) -> Figure:
    """The first ``levels`` levels as boxes: the split, the share of the data, the top class."""
    tree = entry["tree"]
    names = feature_names(dataset)
    classes = dataset["class_names"]
    left, right = tree["children_left"], tree["children_right"]
    pos: dict[int, tuple[float, int]] = {}
    slots = [0]

    def place(node: int, depth: int) -> float:
        if left[node] == -1 or depth == levels:
            x = float(slots[0])
            slots[0] += 1
        else:
            x = (place(left[node], depth + 1) + place(right[node], depth + 1)) / 2
        pos[node] = (x, depth)
        return x

    place(0, 0)
    width = max(slots[0], 2)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * width), 1.3 * (levels + 1) + 0.6), dpi=DPI)
    for node, (x, depth) in pos.items():
        for child, label in ((left[node], "≤"), (right[node], ">")):
            if child in pos:
                cx, cd = pos[child]
                ax.plot([x, cx], [-depth, -cd], color="0.6", lw=0.8, zorder=1)
                ax.text(
                    (x + cx) / 2,
                    -(depth + cd) / 2,
                    label,
                    fontsize=7,
                    ha="center",
                    va="center",
                    color="0.3",
                    backgroundcolor="white",
                    zorder=2,
                )
        p = tree["value"][node]
        k = int(np.argmax(p))
        share = f"{100 * tree['share'][node]:.0f}% of data"
        top = f"class {_text(classes[k])} (p {p[k]:.2f})"
        if left[node] == -1:
            text = f"leaf\n{share}\n{top}"
        elif depth == levels:
            text = f"subtree\n{share}\n{top}"
        else:
            split = (
                f"{_text(names[tree['feature'][node]])} ≤ {threshold_text(tree['threshold'][node])}"
            )
            text = f"{split}\n{share}\n{top}"
        color = plt.get_cmap("tab10")(k % 10)
        ax.text(
            x,
            -depth,
            text,
            ha="center",
            va="center",
            fontsize=8,
            zorder=3,
            bbox={"boxstyle": "round", "fc": (*color[:3], 0.15 + 0.5 * p[k]), "ec": "0.4"},
        )
    ax.set_xlim(-0.7, width - 0.3)
    ax.set_ylim(-levels - 0.5, 0.5)
    ax.axis("off")
    ax.set_title(
        _title(entry, f"first {levels} of {tree['depth']} levels (rules below)"), fontsize=10
    )
    fig.tight_layout()
    return fig


# -- linear models ------------------------------------------------------------------------------


def logistic_figure(entry: dict[str, Any], dataset: dict[str, Any]) -> Figure:
    """Per-class weights: images for image data, top features by |weight| for tabular data."""
    lg = entry["logistic"]
    classes = dataset["class_names"]
    weights = [np.asarray(w) for w in lg["weights"]]
    k = len(weights)
    cols = min(k, 5)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows + 0.5), dpi=DPI)
    axes = np.atleast_1d(axes).ravel()
    lim = max(float(np.abs(w).max()) for w in weights) or 1.0
    names = feature_names(dataset)
    for i, ax in enumerate(axes):
        if i >= k:
            ax.axis("off")
            continue
        w = weights[i]
        if dataset["kind"] == "image":
            ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            top = np.argsort(-np.abs(w))[:TOP_FEATURES][::-1]
            ax.barh(
                [_text(names[j])[:20] for j in top], w[top], color=np.where(w[top] > 0, "C3", "C0")
            )
            ax.tick_params(labelsize=7)
        label = _text(classes[lg["classes"][i]])
        ax.set_title(f"class {label}: {lg['nonzero'][i]} non-zero", fontsize=8)
    fig.suptitle(_title(entry, "weights per class (red: for, blue: against)"), fontsize=10)
    fig.tight_layout()
    return fig


# -- complexity curves --------------------------------------------------------------------------


def complexity_curve_figure(family: str, curve: dict[str, Any]) -> Figure:
    """Fidelity and accuracy against complexity, distilled vs hard labels."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=DPI)
    x = curve["values"]
    for ax, metric in zip(axes, ("fidelity", "accuracy"), strict=True):
        for arm, style in (("kd", "-o"), ("scratch", "--s")):
            label = "distilled (teacher soft targets)" if arm == "kd" else "hard labels"
            ax.plot(x, curve[arm][metric], style, label=label, markersize=3)
        ax.set_xlabel(curve["parameter"])
        ax.set_ylabel(f"test {metric}")
        if family == "logistic":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{family}: fidelity and accuracy against complexity", fontsize=10)
    fig.tight_layout()
    return fig


# -- all of them --------------------------------------------------------------------------------


@dataclass
class ReadableFigure:
    stem: str  # file name without .png, under the run's figures/
    model: str | None  # None for a curve
    draw: Callable[[], Figure]


_PER_FAMILY: dict[str, list[tuple[str, Callable]]] = {
    "soft_tree": [
        ("nodes", soft_tree_nodes_figure),
        ("leaves", soft_tree_leaves_figure),
        ("path", soft_tree_path_figure),
    ],
    "tree": [("tree", tree_figure)],
    "logistic": [("weights", logistic_figure)],
}


def planned_figures(doc: dict[str, Any]) -> list[ReadableFigure]:
    """Every figure readable.json has data for, models in :func:`ordered` order, then curves."""
    ds = doc["dataset"]
    out = []
    for name in ordered(doc):
        entry = doc["models"][name]
        for what, draw in _PER_FAMILY.get(entry["family"], []):
            out.append(
                ReadableFigure(f"readable_{name}_{what}", name, lambda d=draw, e=entry: d(e, ds))
            )
    for family, curve in doc.get("curves", {}).items():
        out.append(
            ReadableFigure(
                f"readable_curve_{family}",
                None,
                lambda f=family, c=curve: complexity_curve_figure(f, c),
            )
        )
    return out


def save_readable_figures(
    doc: dict[str, Any],
    figure_path: Callable[[str], Path],
    rules_path: Callable[[str], Path],
) -> dict[str, list[Path]]:
    """Draw every readable figure (PNG at ``figure_path(stem)``) and write every decision tree's
    rules (text at ``rules_path(model)``); the run's are ``RunFolder.figure`` and ``.rules``."""
    saved: dict[str, list[Path]] = {"figures": [], "rules": []}
    for planned in planned_figures(doc):
        fig = planned.draw()
        path = figure_path(planned.stem)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        saved["figures"].append(path)
    for name in ordered(doc):
        entry = doc["models"][name]
        if "tree" in entry:
            path = rules_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(tree_rules(entry, doc["dataset"]))
            saved["rules"].append(path)
    return saved
