"""Figures drawn from ``explain.json`` alone (compute -> JSON -> render). Matplotlib, Agg backend."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: figures are files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 90
METHOD_TITLES = {"integrated_gradients": "IG", "saliency": "saliency", "grad_cam": "Grad-CAM"}


def safe_text(text: str) -> str:
    """Matplotlib treats ``$`` as maths mode; a class name must be drawn literally."""
    return str(text).replace("$", r"\$")


def _names(explain: dict[str, Any], idx: list[int] | None = None) -> list[str]:
    names = [safe_text(c) for c in explain["dataset"]["class_names"]]
    return names if idx is None else [names[i] for i in idx]


def _short(name: str, n: int = 12) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _draw_input(ax, explain: dict[str, Any], values: list, title: str = "") -> None:
    ds = explain["dataset"]
    if isinstance(values, str):  # a text example
        shown = textwrap.fill(safe_text(values[:300]), width=40)
        ax.text(0, 1, shown, va="top", ha="left", fontsize=6, wrap=True)
        ax.axis("off")
        ax.set_title(title, fontsize=8)
        return
    a = np.asarray(values, dtype=float)
    if ds["kind"] == "image":
        img = a.transpose(1, 2, 0) if a.shape[0] == 3 else a[0]
        ax.imshow(np.clip(img, 0, 1), cmap=None if a.shape[0] == 3 else "gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.barh(range(len(a)), a, color="0.5")
        ax.set_yticks(range(len(a)))
        ax.set_yticklabels([_short(safe_text(f)) for f in ds["feature_names"]] or None, fontsize=5)
        ax.invert_yaxis()
    ax.set_title(title, fontsize=8)


def _matrix_axes(ax, m: np.ndarray, labels: list[str], title: str, aspect: str = "equal"):
    """Heatmap with the off-diagonal on its own colour scale (grey diagonal), so the small
    wrong-class probabilities that carry the dark knowledge are visible."""
    k = len(m)
    eye = np.eye(k, dtype=bool)
    off = np.ma.masked_where(eye | np.isnan(m), m)
    lo, hi = (float(off.min()), float(off.max())) if off.count() else (0.0, 1.0)
    im = ax.imshow(off, cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-12), aspect=aspect)
    ax.imshow(np.ma.masked_where(~eye, m), cmap="Greys", vmin=0, vmax=1, aspect=aspect)
    fs = 7 if k <= 12 else 5
    if k <= 30:
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels([_short(s, 8) for s in labels], rotation=90, fontsize=fs)
        ax.set_yticklabels([_short(s, 8) for s in labels], fontsize=fs)
    ax.set_xlabel("predicted class", fontsize=7)
    ax.set_ylabel("true class", fontsize=7)
    ax.set_title(title, fontsize=8)
    return im


def similarity_figure(explain: dict[str, Any], key: str) -> Figure:
    """Teacher's class-similarity matrix at one temperature, clustered, with the dendrogram."""
    from scipy.cluster.hierarchy import dendrogram

    dk = explain["dark_knowledge"]
    order = dk["order"]
    m = np.asarray(dk["matrices"][key]["teacher"], dtype=float)[np.ix_(order, order)]
    fig = plt.figure(figsize=(5.2, 6.2), dpi=DPI)
    top = fig.add_axes((0.15, 0.78, 0.62, 0.17))
    ax = fig.add_axes((0.15, 0.1, 0.62, 0.62))
    if dk["linkage"]:
        dendrogram(np.asarray(dk["linkage"]), ax=top, no_labels=True, color_threshold=0)
        top.set_xlim(0, 10 * len(order))  # scipy puts leaf i at x = 10 i + 5: under column i
    top.axis("off")
    t = dk["temperatures"][key]
    im = _matrix_axes(ax, m, _names(explain, order), f"teacher, T = {t:g}", aspect="auto")
    cax = fig.add_axes((0.8, 0.1, 0.03, 0.62))
    fig.colorbar(im, cax=cax).set_label("mean probability (off-diagonal)", fontsize=7)
    return fig


def student_similarity_figure(explain: dict[str, Any]) -> Figure:
    dk = explain["dark_knowledge"]
    names = list(dk["matrices"]["1"])
    order = dk["order"]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), dpi=DPI, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        m = np.asarray(dk["matrices"]["1"][name], dtype=float)[np.ix_(order, order)]
        d = dk["distance"].get(name, {}).get("1")
        title = name if d is None else f"{name}: distance {d:.3f}"
        _matrix_axes(ax, m, _names(explain, order), safe_text(title))
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def entropy_figure(explain: dict[str, Any]) -> Figure:
    e = explain["dark_knowledge"]["entropy"]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=DPI)
    ax.plot(e["temperatures"], e["teacher"], marker="o", ms=3, label="teacher")
    ax.axhline(e["max"], color="0.5", ls="--", lw=1, label="uniform (log K)")
    ax.axvline(explain["temperature"], color="C3", ls=":", lw=1, label="distillation T")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("mean entropy (nats)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _prob_bars(ax, probs: dict[str, list[float]], labels: list[str]) -> None:
    k = len(labels)
    width = 0.8 / max(1, len(probs))
    for j, (name, p) in enumerate(probs.items()):
        ax.bar(np.arange(k) + j * width - 0.4 + width / 2, p, width, label=safe_text(name))
    # Log scale: the wrong-class probabilities that carry dark knowledge span many decades.
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 1.5)
    ax.set_xticks(range(k))
    ax.set_xticklabels([_short(s, 8) for s in labels], rotation=90 if k > 5 else 0, fontsize=6)
    ax.tick_params(axis="y", labelsize=6)


def _examples_figure(
    explain: dict[str, Any], examples: list[dict], keep: set[str] | None
) -> Figure:
    n = len(examples)
    fig, axes = plt.subplots(
        n, 2, figsize=(7, 1.9 * n), dpi=DPI, squeeze=False, gridspec_kw={"width_ratios": [1, 3]}
    )
    labels = _names(explain)
    for row, ex in zip(axes, examples, strict=True):
        probs = {n: p for n, p in ex["probs"].items() if keep is None or n in keep}
        said = ", ".join(
            f"{_short(safe_text(n), 8)}: {labels[int(np.argmax(p))]}" for n, p in probs.items()
        )
        title = f"#{ex['index']} true: {labels[ex['label']]}"
        _draw_input(row[0], explain, ex["input"], title if keep is None else f"{title}\n{said}")
        _prob_bars(row[1], probs, labels)
    axes[0][1].legend(fontsize=6, ncol=4, loc="upper right")
    fig.tight_layout()
    return fig


def examples_figure(explain: dict[str, Any]) -> Figure | None:
    examples = explain["dark_knowledge"]["examples"]
    if not examples:
        return None
    return _examples_figure(explain, examples, None)


def attribution_figure(explain: dict[str, Any]) -> Figure | None:
    """Rows: examples. Columns: the input, then each model's maps side by side."""
    at = explain["attributions"]
    examples, maps = at["examples"], at["maps"]
    if not examples or not maps:
        return None
    cols = [(m, meth) for m, per in maps.items() for meth in per]
    n, c = len(examples), len(cols) + 1
    image = explain["dataset"]["kind"] == "image"
    fig, axes = plt.subplots(
        n, c, figsize=(1.45 * c, 1.55 * n) if image else (2.2 * c, 2.6 * n), dpi=DPI, squeeze=False
    )
    labels = _names(explain)
    for i, ex in enumerate(examples):
        _draw_input(axes[i][0], explain, ex["input"], f"class {labels[ex['target']]}")
        for j, (model, meth) in enumerate(cols, start=1):
            a = np.asarray(maps[model][meth][i], dtype=float)
            ax = axes[i][j]
            if image:
                lim = float(np.abs(a).max()) or 1.0
                signed = meth == "integrated_gradients"
                ax.imshow(
                    a, cmap="RdBu_r" if signed else "magma", vmin=-lim if signed else 0, vmax=lim
                )
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                ax.barh(range(len(a)), a, color=np.where(a >= 0, "C3", "C0"))
                ax.set_yticks([])
                ax.invert_yaxis()
            if i == 0:
                ax.set_title(
                    f"{_short(safe_text(model))}\n{METHOD_TITLES.get(meth, meth)}", fontsize=7
                )
    fig.tight_layout()
    return fig


def agreement_figure(explain: dict[str, Any]) -> Figure | None:
    ag = explain["attributions"]["agreement"]
    if not ag:
        return None
    keys = ["spearman", "cosine", "topk_overlap"]
    fig, ax = plt.subplots(figsize=(5.5, 3), dpi=DPI)
    width = 0.8 / len(ag)
    for j, (name, vals) in enumerate(ag.items()):
        ys = [vals[k] if vals[k] is not None else np.nan for k in keys]
        ax.bar(np.arange(3) + j * width - 0.4 + width / 2, ys, width, label=safe_text(name))
    ax.axhline(0, color="0.3", lw=0.8)
    ax.plot([1.6, 2.4], [explain["attributions"]["topk"]] * 2, "k:", lw=1, label="top-k chance")
    ax.set_xticks(range(3))
    ax.set_xticklabels(
        ["Spearman", "cosine", f"top-{100 * explain['attributions']['topk']:g}% overlap"]
    )
    ax.set_ylabel("agreement with teacher")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def deletion_figure(explain: dict[str, Any]) -> Figure | None:
    fa = explain["faithfulness"]
    if not fa:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=DPI)
    for j, (name, f) in enumerate(fa.items()):
        ax.plot(
            f["fractions"],
            f["accuracy"],
            color=f"C{j}",
            label=f"{safe_text(name)} (AUC {f['deletion_auc']:.3f})",
        )
        ax.plot(f["fractions"], f["accuracy_random"], color=f"C{j}", ls=":", lw=1)
    ax.set_xlabel("share of input features removed (dotted: in random order)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_figure(explain: dict[str, Any]) -> Figure:
    conf = explain["disagreements"]["confusion"]
    cols = min(4, len(conf))
    rows = math.ceil(len(conf) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), dpi=DPI, squeeze=False)
    labels = _names(explain)
    k = len(labels)
    for ax, (name, c) in zip(axes.flat, conf.items(), strict=False):
        c = np.asarray(c, dtype=float)
        ax.imshow(np.log1p(c), cmap="Blues")
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    if c[i, j]:
                        ax.text(j, i, int(c[i, j]), ha="center", va="center", fontsize=5)
        if k <= 30:
            ax.set_xticks(range(k))
            ax.set_yticks(range(k))
            ax.set_xticklabels([_short(s, 8) for s in labels], rotation=90, fontsize=6)
            ax.set_yticklabels([_short(s, 8) for s in labels], fontsize=6)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
        ax.set_title(safe_text(name), fontsize=8)
    for ax in list(axes.flat)[len(conf) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def disagreement_figure(explain: dict[str, Any]) -> Figure | None:
    examples = explain["disagreements"]["examples"]
    if not examples:
        return None
    return _examples_figure(explain, examples, set(explain["disagreements"]["pair"]))


FIGURES: dict[str, Callable[[dict[str, Any]], Figure | None]] = {
    "similarity_t1": lambda e: similarity_figure(e, "1"),
    "similarity_tdistill": lambda e: similarity_figure(e, "distill"),
    "similarity_models": student_similarity_figure,
    "entropy_vs_t": entropy_figure,
    "example_probabilities": examples_figure,
    "attributions": attribution_figure,
    "agreement": agreement_figure,
    "deletion": deletion_figure,
    "confusion": confusion_figure,
    "disagreements": disagreement_figure,
}


def save_figures(explain: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    """Draw every figure that has data; returns name -> PNG path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, draw in FIGURES.items():
        fig = draw(explain)
        if fig is None:
            continue
        path = folder / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        out[name] = path
    return out
